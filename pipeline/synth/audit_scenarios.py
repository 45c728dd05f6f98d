"""Scenarios that audits ship (``audits/<id>/scenarios.py``): whole synthetic patients with exact ground truth.

An audit's ``scenarios.py`` may define ``scenario_rows(ctx: ScenarioContext) -> ScenarioRows``. Its patients
are new ones, numbered after the generated population's, so no background row ever touches them and
their ground truth stays exact; their rows are appended to the generated tables. The truth of each
audit it names is written as ``ground_truth/<audit id>/<name>.csv`` (a scenario may make a patient a
case in several audits). Patients placed inside the generated population instead: population_scenarios.py.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from pipeline import audits

SCENARIOS_FILE = "scenarios.py"
HOOK = "scenario_rows"
RNG_STREAM = 13  # the audits' scenarios draw from the stream (seed, RNG_STREAM), apart from the population's


@dataclass
class ScenarioContext:
    """What an audit's scenarios may use: the random source, the population's size and months, the id form."""

    rng: np.random.Generator
    patients: int  # the generated population's size: scale the instance counts with it
    case_density: float  # --case-density: scale them by this too (1: the usual share of cases)
    first_day: np.datetime64  # first site-local date of the generated months
    end_day: np.datetime64  # the day after the last one
    site_timezone: str
    next_patient: int
    next_procedure: int
    next_order: int
    widths: tuple[int, int, int]  # zero-padded digits of patient, procedure and order ids

    def _ids(self, prefix: str, start: int, n: int, width: int) -> pl.Series:
        return pl.select(pl.lit(prefix) + pl.int_range(start + 1, start + n + 1).cast(pl.String).str.zfill(width))[:, 0]

    def patient_ids(self, n: int) -> pl.Series:
        out = self._ids("P", self.next_patient, n, self.widths[0])
        self.next_patient += n
        return out

    def procedure_ids(self, n: int) -> pl.Series:
        out = self._ids("PR", self.next_procedure, n, self.widths[1])
        self.next_procedure += n
        return out

    def order_ids(self, n: int) -> pl.Series:
        out = self._ids("O", self.next_order, n, self.widths[2])
        self.next_order += n
        return out


@dataclass
class ScenarioRows:
    """An audit's scenario patients: input rows (text columns of the input contract) and ground truth."""

    tables: dict[str, pl.DataFrame] = field(default_factory=dict)  # procedures, imaging_orders, diagnoses
    truth: dict[str, dict[str, pl.DataFrame]] = field(default_factory=dict)  # audit id -> file name -> rows
    summary: dict = field(default_factory=dict)


def scenario_modules() -> list[tuple[str, object]]:
    """(audit id, module) of every audit found that ships a scenarios.py, by id."""
    out = []
    for audit in audits.discover():
        path = audit.folder / SCENARIOS_FILE
        if not path.is_file():
            continue
        name = f"order_audit_scenarios_{audit.id}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses look their module up while the file runs
            spec.loader.exec_module(module)
        out.append((audit.id, module))
    return out


def collect(ctx: ScenarioContext) -> list[tuple[str, ScenarioRows]]:
    """Every audit's scenario rows, drawn in audit-id order from the context's random source (audits whose
    scenarios.py defines ``scenario_rows``; others may only place patients inside the population)."""
    return [(audit_id, module.scenario_rows(ctx)) for audit_id, module in scenario_modules() if hasattr(module, HOOK)]


def rows_for(table: str, columns: list[str], collected: list[tuple[str, ScenarioRows]]) -> pl.DataFrame | None:
    """The audits' rows of one table in the generator's columns (a column they do not fill is empty)."""
    frames = []
    for audit_id, rows in collected:
        frame = rows.tables.get(table)
        if frame is None or frame.height == 0:
            continue
        unknown = [c for c in frame.columns if c not in columns]
        if unknown:
            raise ValueError(f"scenarios of audit {audit_id}: {table} has columns the generator does not write: {unknown}")
        frames.append(
            frame.select([pl.col(c).cast(pl.String) if c in frame.columns else pl.lit(None, pl.String).alias(c) for c in columns])
        )
    return pl.concat(frames) if frames else None


def write_truth(out_dir: Path, collected: list[tuple[str, ScenarioRows]]) -> dict[str, dict[str, int]]:
    """ground_truth/<audit id>/<name>.csv for every audit any scenario names; returns the row counts."""
    merged: dict[str, dict[str, list[pl.DataFrame]]] = {}
    for _, rows in collected:
        for audit_id, files in rows.truth.items():
            for name, frame in files.items():
                merged.setdefault(audit_id, {}).setdefault(name, []).append(frame)
    counts: dict[str, dict[str, int]] = {}
    for audit_id, files in sorted(merged.items()):
        folder = out_dir / "ground_truth" / audit_id
        folder.mkdir(parents=True, exist_ok=True)
        for name, frames in sorted(files.items()):
            frame = pl.concat(frames, how="diagonal").sort(frame_key(frames[0]))
            frame.write_csv(folder / f"{name}.csv")
            counts.setdefault(audit_id, {})[name] = frame.height
    return counts


def frame_key(frame: pl.DataFrame) -> list[str]:
    """Sort truth rows by their id columns (order, case, patient), whichever the file has."""
    return [c for c in ("order_id", "case_id", "patient_id", "index_date") if c in frame.columns] or frame.columns[:1]


def ground_truth(folder: Path, audit_id: str, name: str, catalogue: str | None = None) -> pl.DataFrame:
    """An audit's ground truth in a generated folder, as text: the generator's own catalogue file
    (``catalogue``, e.g. ground_truth_orders.csv, when it is that audit's) and the audits' scenario rows
    for it (ground_truth/<audit id>/<name>.csv)."""
    paths = [Path(folder) / catalogue] if catalogue else []
    paths.append(Path(folder) / "ground_truth" / audit_id / f"{name}.csv")
    frames = [pl.read_csv(p, infer_schema=False, glob=False) for p in paths if p.is_file()]
    return pl.concat(frames, how="diagonal") if frames else pl.DataFrame()
