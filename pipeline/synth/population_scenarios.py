"""Scenarios inside the population (an audit's ``population_*`` hook): patients drawn among the generated ones.

Besides ``scenario_rows`` (whole patients appended after the population: audit_scenarios.py), an
audit's ``scenarios.py`` may place scenario patients *inside* the population, drawn from the
population's own random stream and numbered with the background rows in time order. It then defines

* ``population_instances(rng, patients, case_density) -> dict[name, int]``: how many patients play
  each scenario (drawn first, before the population is laid out);
* ``population_rows(ctx: PopulationContext, patients: np.ndarray, instances) -> PopulationRows``: their
  rows as numpy columns (codes as text; keys from ``ctx``), and their truth keyed by row keys;
* ``population_summary(rows, truth, patient_ids) -> dict``: what synth.json reports of them (top-level
  keys; ``truth`` holds the written frames, ``patient_ids`` turns population indexes into ids).

The engine gives their patients no background imaging of the neuro mix, numbers their rows with the
background's, turns the keys of their truth into ids and writes it under the file names they give.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from pipeline.synth import audit_scenarios

HOOK = "population_rows"
PROCEDURE_COLUMNS = ("pat", "t", "code", "key")
ORDER_COLUMNS = ("pat", "t", "code", "status", "ind", "missing", "dept", "prov", "key")
DIAGNOSIS_COLUMNS = ("pat", "t", "code", "date_only")


@dataclass
class PopulationContext:
    """The population as the hook sees it: the random stream, the months, DST changes, birth dates, key counters."""

    rng: np.random.Generator
    site_timezone: str
    start_local: int  # first generated local midnight, naive seconds since epoch
    end_local: int  # the local midnight after the last generated month
    spring: list[int]  # UTC seconds where the site's clock goes forward (or the next ones, if none inside)
    fall: list[int]  # ... and back
    birth: np.ndarray  # days since epoch, per population patient (the hook sets its patients')
    birth_known: np.ndarray  # False: the patient's birth date is not in the extract
    n_order_providers: int  # ordering clinicians are numbered 1..n
    next_procedure_key: int = 0
    next_order_key: int = 0

    def procedure_keys(self, n: int) -> np.ndarray:
        """Keys of n new procedure rows (the truth names procedures by them; the engine turns them into ids)."""
        out = np.arange(self.next_procedure_key, self.next_procedure_key + n)
        self.next_procedure_key += n
        return out

    def order_keys(self, n: int) -> np.ndarray:
        out = np.arange(self.next_order_key, self.next_order_key + n)
        self.next_order_key += n
        return out


@dataclass
class Truth:
    """One ground-truth file: rows whose ``ids`` columns hold keys (kind: patient, procedure or order), sorted by ``sort``."""

    frame: pl.DataFrame
    ids: dict[str, str]
    sort: str


@dataclass
class PopulationRows:
    """Scenario rows as lists of numpy columns per table (see *_COLUMNS), their truth, and names of new codes."""

    procedures: dict[str, list[np.ndarray]] = field(default_factory=lambda: {k: [] for k in PROCEDURE_COLUMNS})
    orders: dict[str, list[np.ndarray]] = field(default_factory=lambda: {k: [] for k in ORDER_COLUMNS})
    diagnoses: dict[str, list[np.ndarray]] = field(default_factory=lambda: {k: [] for k in DIAGNOSIS_COLUMNS})
    truth: dict[str, Truth] = field(default_factory=dict)  # file name in the extract's folder -> rows
    # code -> text of the codes the engine's tables lack, by kind: procedures, orders, indications (statuses,
    # departments: a value the engine lacks needs an entry too; diagnoses need none)
    names: dict[str, dict[str, str]] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)  # the hook's own notes for population_summary

    def add(self, table: str, **columns: np.ndarray) -> None:
        """Rows of one table (procedures, orders, diagnoses): every one of its columns, of equal length."""
        target = getattr(self, table)
        if set(columns) != set(target):
            raise ValueError(f"{table} rows need the columns {sorted(target)}, got {sorted(columns)}")
        for name, column in columns.items():
            target[name].append(column)


def modules() -> list[tuple[str, object]]:
    """(audit id, scenarios module) of the audits that place scenario patients inside the population, by id."""
    return [(audit_id, module) for audit_id, module in audit_scenarios.scenario_modules() if hasattr(module, HOOK)]


class CodeTable:
    """A generated column's codes and their display text; an audit's scenarios add the codes it alone uses."""

    def __init__(self, what: str, names: dict[str, str], self_named: bool = False):
        self.what, self.names, self.self_named = what, dict(names), self_named  # self_named: a new code is its own text
        self.codes = list(self.names)
        self.position = {c: i for i, c in enumerate(self.codes)}

    def indexes(self, codes: np.ndarray, names: dict[str, str], audit_id: str) -> np.ndarray:
        """Positions of the given codes, adding those the table lacks with the audit's text for them."""
        unique, inverse = np.unique(np.asarray(codes, dtype=object).astype(str), return_inverse=True)
        for code in unique.tolist():
            if code in names and code in self.position and names[code] != self.names[code]:
                raise ValueError(f"scenarios of audit {audit_id}: {self.what} {code!r} is named {self.names[code]!r} here")
            if code not in self.position:
                if code not in names and not self.self_named:
                    raise ValueError(f"scenarios of audit {audit_id}: {self.what} {code!r} needs its text")
                self.position[code] = len(self.codes)
                self.codes.append(code)
                self.names[code] = names.get(code, code)
        return np.array([self.position[c] for c in unique.tolist()], dtype=np.int64)[inverse.reshape(-1)]

    def text(self) -> list[str]:
        return [self.names[c] for c in self.codes]


def columns(parts: list[PopulationRows], table: str, name: str, dtype=np.int64) -> np.ndarray:
    """One column of one table over every audit's population rows, in audit order."""
    arrays = [a for rows in parts for a in getattr(rows, table)[name]]
    return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)


def coded(parts: list[tuple[str, PopulationRows]], table: str, name: str, codes: CodeTable, kind: str) -> np.ndarray:
    """A text column of the audits' rows as positions in the engine's code table."""
    out = [codes.indexes(a, rows.names.get(kind, {}), audit_id) for audit_id, rows in parts for a in getattr(rows, table)[name]]
    return np.concatenate(out) if out else np.zeros(0, np.int64)
