"""Every audit's deck (``audits/<id>/deck/*.toml``): read, written as input folders for the real CLI, run, and
checked against each file's full expected result.

All deck files of all audits are combined into one input folder (each table written with the union of
the columns its rows use; ids never collide across decks); a file with ``separate_input = true`` runs on
an input of its own (only its rows, only the columns they use), with its ``[extract]`` as its config
(``deck_config``). One home for `order-audit deck` (an audit author's check of their own deck), the tests
(tests/test_decks.py: every audit's expected results; tests/test_deck.py: the CSF deck's extras) and
benchmarks/run.py (the deck as the small-run benchmark scale).
"""

from __future__ import annotations

import csv
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline import audits
from pipeline.errors import ConfigError
from pipeline.models.reference import CODE_MAP_COLUMNS

INPUT_TABLES = ("procedures", "imaging_orders", "diagnoses", "patients")
# canonical columns written first (the input contract); other columns a deck uses follow
TABLE_COLUMNS = {
    "procedures": ["procedure_id", "patient_id", "performed_at", "procedure_code", "department"],
    "imaging_orders": ["order_id", "patient_id", "ordered_at", "order_code", "ordering_department"],
    "diagnoses": ["patient_id", "diagnosis_code", "recorded_at"],
    "patients": ["patient_id", "birth_date"],
}
LOCAL_MAP_COLUMNS = [*CODE_MAP_COLUMNS, "valid_from", "valid_to", "source"]
LOCAL_MAP_DEFAULTS = {"valid_from": "2000-01-01", "valid_to": "", "source": "deck (synthetic site map)"}
SITE_TIMEZONE = "America/New_York"


@dataclass(frozen=True)
class DeckFile:
    audit: str  # the audit whose deck holds the file
    stem: str
    case: dict
    path: Path | None = field(default=None, compare=False)  # where it was read from (None: built in memory)

    @property
    def id(self) -> str:
        return f"{self.audit}/{self.stem}"

    @property
    def separate(self) -> bool:
        return bool(self.case.get("separate_input"))


# the tables a deck file may hold, each a list of rows ([[name]]); every row of expected_orders names its order_id
ROW_TABLES = (*INPUT_TABLES, "local_codes", "expected_orders", "expected_cases", "expected_episodes")


def read_deck_file(path: Path) -> dict:
    """One deck file, or a ConfigError naming it (and its line, when TOML gives one) and what to fix: a
    traceback, or a KeyError deep in the check, was all an author writing their first deck got."""
    try:
        with path.open("rb") as fh:
            case = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        # the parser's message ends "(at line N, column M)": the place to look
        raise ConfigError(f"{path}: not valid TOML: {exc}; fix the file (docs/AUDITS.md, The deck)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the deck file ({exc}); fix its permissions or encoding (UTF-8)") from None
    for table in ROW_TABLES:
        rows = case.get(table, [])
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ConfigError(f"{path}: {table}: write each row as a [[{table}]] table of key = value lines")
    for n, row in enumerate(case.get("expected_orders", []), start=1):
        if "order_id" not in row:
            raise ConfigError(f"{path}: [[expected_orders]] number {n} has no order_id: name the order it expects")
    return case


def load_deck(folder: Path) -> dict[str, dict]:
    return {path.stem: read_deck_file(path) for path in sorted(folder.glob("*.toml"))}


def deck_files(found: list | None = None) -> list[DeckFile]:
    """Every deck file of every audit found (the shipped ones and the audits path's)."""
    out = []
    for audit in found if found is not None else audits.discover():
        if audit.deck_dir.is_dir():
            for path in sorted(audit.deck_dir.glob("*.toml")):
                out.append(DeckFile(audit.id, path.stem, read_deck_file(path), path))
    return out


def rows_of(case: dict, table: str) -> list[dict]:
    return [{k: str(v) for k, v in row.items()} for row in case.get(table, [])]


def order_ids(case: dict) -> set[str]:
    return {r["order_id"] for r in rows_of(case, "imaging_orders")}


def procedure_ids(case: dict) -> set[str]:
    return {r["procedure_id"] for r in rows_of(case, "procedures")}


def patient_ids(case: dict) -> set[str]:
    return {r["patient_id"] for t in INPUT_TABLES for r in rows_of(case, t)}


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})


def local_map_key(row: dict) -> str:
    return row["code"].strip().upper()


def write_input(folder: Path, cases: list[dict]) -> None:
    """The cases' rows as one input folder: a table with rows gets a file, with the union of their columns."""
    folder.mkdir(parents=True, exist_ok=True)
    for table, required in TABLE_COLUMNS.items():
        columns, rows = list(required), []
        for case in cases:
            for row in rows_of(case, table):
                rows.append(row)
                columns += [c for c in row if c not in columns]
        if rows:
            write_csv(folder / f"{table}.csv", columns, rows)
    local: dict[str, dict] = {}
    for case in cases:
        for row in rows_of(case, "local_codes"):
            local.setdefault(local_map_key(row), {**LOCAL_MAP_DEFAULTS, **row})
    if local:
        write_csv(folder / "local_code_map.csv", LOCAL_MAP_COLUMNS, list(local.values()))


def deck_config(case: dict, audits_path: list[str] | None = None, key_file: Path | None = None) -> str:
    """The config a deck run uses: the folders of the audits outside this repository (``audits_path``, absolute),
    the pseudonym key's file, and a separate file's ``[extract]`` (where the site declares its extract starts and
    reaches, each a quoted ISO date or time); '' when there is none of them. Nothing else of a site's config: a deck
    is written in the input contract's own shape, with the audits' default parameters."""
    lines = [f"audits_path = {json.dumps([str(Path(p).resolve()) for p in audits_path])}\n"] if audits_path else []
    if key_file is not None:
        lines += ["[privacy]\n", f"key_file = {json.dumps(str(key_file))}\n"]
    extract = case.get("extract") or {}
    if extract:
        lines += ["[extract]\n", *(f"{k} = {json.dumps(str(v))}\n" for k, v in extract.items())]
    return "".join(lines)


def write_deck_input(folder: Path, files: list[DeckFile] | None = None) -> None:
    """Every deck file but the separate ones, as one input folder."""
    write_input(folder, [f.case for f in (files if files is not None else deck_files()) if not f.separate])


# ----------------------------------------------------------------------------- checking a deck file

EPISODE_KEYS = ("patient_id", "index_date")  # a case named by its patient and index date, not by its id


def _read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False, glob=False).fill_null("")


def deck_outputs(out: Path, reid: Path, audit_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The audit's audited orders and cases (``OUT/<audit id>/``), each with the raw patient id from the crosswalk."""
    crosswalk = _read(reid).select("patient_key", "patient_id")
    folder = out / audit_id
    orders = _read(folder / "audited_orders.csv").join(crosswalk, on="patient_key", how="left").fill_null("")
    cases = _read(folder / "cases.csv").join(crosswalk, on="patient_key", how="left").fill_null("")
    return orders, cases


def mine(row: dict, f: DeckFile, audit_id: str) -> bool:
    """Whether an expected row is the audit's (rows of another audit say ``audit = "<id>"``)."""
    return row.get("audit", f.audit) == audit_id


def _case_key(case: dict) -> tuple[str, str]:
    return case.get("patient_id", ""), case.get("index_date", "")


def _shown(e: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in e.items() if k != "order_id")


def deck_problems(orders: pl.DataFrame, cases: pl.DataFrame, f: DeckFile, audit_id: str) -> list[str]:
    """What differs between the audit's outputs and the deck file's full expected result (empty: none)."""
    case_by_id = {c["case_id"]: c for c in cases.iter_rows(named=True)}
    ours = orders.filter(pl.col("order_id").is_in(sorted(order_ids(f.case))))
    actual = {r["order_id"]: r for r in ours.iter_rows(named=True)}
    expected = {e["order_id"]: e for e in rows_of(f.case, "expected_orders") if mine(e, f, audit_id)}
    problems: list[str] = []
    for oid, n in ours.group_by("order_id").len().filter(pl.col("len") > 1).iter_rows():
        problems.append(f"order {oid} listed {n} times (one row per order expected)")
    for oid in sorted(expected.keys() - actual.keys()):
        problems.append(f"missing order {oid}: expected {_shown(expected[oid])}")
    for oid in sorted(actual.keys() - expected.keys()):
        a = actual[oid]
        problems.append(f"unexpected order {oid}: got case {a['case_id']} {a['verdict']} [{a['reasons']}] (not expected here)")
    for oid in sorted(expected.keys() & actual.keys()):
        e, a = expected[oid], actual[oid]
        wrong = {
            k: (v, a.get(k, "(no such column)")) for k, v in e.items() if k not in ("audit", *EPISODE_KEYS) and a.get(k) != v
        }
        if any(k in e for k in EPISODE_KEYS):
            case = case_by_id.get(a["case_id"], {})
            got = (case.get("patient_id", "?"), case.get("index_date", "?"))
            if got != _case_key(e):
                wrong["case"] = (_case_key(e), got)
        # one line a field: an author fixes (or accepts) each on its own
        problems += [f"order {oid} (case {a['case_id']}) {k}: expected {w!r}, found {g!r}" for k, (w, g) in wrong.items()]

    theirs = cases.filter(pl.col("patient_id").is_in(sorted(patient_ids(f.case))))
    want_ids = {c["case_id"]: c for c in rows_of(f.case, "expected_cases") if mine(c, f, audit_id)}
    want_eps = {_case_key(c): c for c in rows_of(f.case, "expected_episodes") if mine(c, f, audit_id)}
    seen_eps = set()
    for c in theirs.iter_rows(named=True):
        key = _case_key(c)
        if c["case_id"] in want_ids:  # named by its id: any other key is a column of cases.csv
            e = want_ids[c["case_id"]]
        elif key in want_eps:
            seen_eps.add(key)
            e = want_eps[key]
        else:
            problems.append(f"unexpected case {c['case_id']} of patient {c['patient_id']} (index {c.get('index_date', '')})")
            continue
        checked = [k for k in e if k not in ("audit", *EPISODE_KEYS)]
        wrong = {k: (e[k], c.get(k, "(no such column)")) for k in checked if c.get(k) != e[k]}
        problems += [f"case {c['case_id']} ({key[0]}, {key[1]}) {k}: expected {w!r}, found {g!r}" for k, (w, g) in wrong.items()]
    missing_ids = sorted(set(want_ids) - set(theirs["case_id"]))
    missing_eps = sorted(set(want_eps) - seen_eps)
    if missing_ids or missing_eps:
        problems.append(f"missing cases: {missing_ids + [f'{p} on {d}' for p, d in missing_eps]}")
    return problems


# ----------------------------------------------------------------------------- running the deck

# run(name, args) runs `order-audit run ARGS` and returns its stderr, or stops (raises) when it fails
Runner = Callable[[str, list], str]


def run_decks(
    base: Path,
    found: list,
    files: list[DeckFile],
    run: Runner,
    audits_path: list[str] | None = None,
    key_file: Path | None = None,
) -> dict:
    """The deck files through the real CLI under ``base``: every file but the separate ones as one input (all audits,
    with the re-identification crosswalk), and each ``separate_input`` file on its own input (when its audit can run).
    Each run's folders by name ("combined", or the file's id). ``audits_path``, ``key_file``: as ``deck_config``."""

    def one(name: str, write, config: str) -> dict:
        folder = base / name
        inp, out, wh, reid = folder / "input", folder / "output", folder / "wh.duckdb", base / f"{name}.reid.csv"
        write(inp)
        configured = []
        if config:  # the run's config beside the input, not in it
            (folder / "site.toml").write_text(config, encoding="utf-8")
            configured = ["--config", folder / "site.toml"]
        args = ["--input", inp, "--out", out, "--warehouse", wh, "--site-timezone", SITE_TIMEZONE, "--reid-file", reid]
        stderr = run(name, [*args, *configured])
        return {"input": inp, "out": out, "warehouse": wh, "reid": reid, "stderr": stderr}

    runs = {"combined": one("combined", lambda inp: write_deck_input(inp, files), deck_config({}, audits_path, key_file))}
    runnable = {a.id for a in found if a.runnable}
    for f in files:
        if f.separate and f.audit in runnable:  # its own audit must be able to read it
            name = f.id.replace("/", "__")
            runs[f.id] = one(name, lambda inp, f=f: write_input(inp, [f.case]), deck_config(f.case, audits_path, key_file))
    return runs


def run_of(runs: dict, f: DeckFile) -> dict | None:
    """The run a deck file's results are in (None: a separate file whose audit could not run)."""
    return runs.get(f.id) if f.separate else runs["combined"]


def results(run: dict, audit_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The audit's audited orders and cases of one run. A separate input may lack a table the audit requires: the
    run skipped it (with a line in its log) and it lists nothing, so any expectation of it in the file fails."""
    if not (Path(run["out"]) / audit_id).is_dir():
        none = pl.DataFrame(schema={c: pl.String for c in ("order_id", "case_id", "verdict", "reasons", "patient_id")})
        return none, none.select("case_id", "patient_id")
    return deck_outputs(Path(run["out"]), Path(run["reid"]), audit_id)


@dataclass(frozen=True)
class Checked:
    files: int  # deck files checked
    orders: int  # expected orders checked (a file's orders, once per audit that expects them)
    mismatches: list[tuple[DeckFile, str, str]]  # (file, audit id, what differs)


def check(runs: dict, found: list, files: list[DeckFile]) -> Checked:
    """Every deck file against every runnable audit's outputs (an audit not listed in a file must list none of its
    patients' orders or cases)."""
    mismatches, orders, cache = [], 0, {}
    for f in files:
        run = run_of(runs, f)
        if run is None:
            continue
        for audit in found:
            if not audit.runnable:
                continue
            key = (str(run["out"]), audit.id)
            if key not in cache:
                cache[key] = results(run, audit.id)
            orders += sum(1 for e in rows_of(f.case, "expected_orders") if mine(e, f, audit.id))
            mismatches += [(f, audit.id, p) for p in deck_problems(*cache[key], f, audit.id)]
    return Checked(len(files), orders, mismatches)
