"""A partial birth date (1980, 1980-05) through the real CLI: the audits' attrition counts an age band it settles
as settled and one it crosses as unknown age (the decks adult_partial_birth_date and age_partial_birth_dates(_procedure_rows)
hold the cases; here their attrition, which a deck does not check), and a Parquet extract reads it as a CSV does."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import run_cli

from pipeline.deck import deck_files, write_deck_input

PARTIAL_DECKS = (
    "csf_leak/adult_partial_birth_date",
    "low_back_pain/age_partial_birth_dates",
    "low_back_pain/age_partial_birth_dates_procedure_rows",
)


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("partial_births")
    write_deck_input(base / "input", [f for f in deck_files() if f.id in PARTIAL_DECKS])
    out = base / "out"
    result = run_cli("run", "--input", base / "input", "--out", out, "--warehouse", base / "wh.duckdb")
    assert result.returncode == 0, result.stderr
    return out


def _counts(out: Path, audit: str) -> dict[str, int]:
    attrition = pl.read_csv(out / audit / "attrition.csv", infer_schema=False)
    return {row["step"]: int(row["count"]) for row in attrition.iter_rows(named=True)}


def test_csf_leak_attrition_counts_a_range_across_18_as_unknown_age(audited):
    counts = _counts(audited, "csf_leak")
    # 2007 and 2007-12 on 2026-01-01, 2008-01 on 2026-02-02: adults; 2008-03 on 2026-02-15: 17 whichever day;
    # 2008 on 2026-06-15 (17 or 18) and 2008-02 on 2026-02-15 (17 or 18): unknown
    assert counts["Index procedures (lumbar, can puncture the dura)"] == 6
    assert counts["Index procedures in adults"] == 3
    assert counts["Under the minimum age at the procedure"] == 1
    assert counts["Age unknown (no birth date or age, or an impossible age)"] == 2


def test_low_back_pain_attrition_counts_a_range_across_18_or_75_as_unknown_age(audited):
    counts = _counts(audited, "low_back_pain")
    assert counts["New episodes"] == 9
    assert counts["Under 18 at the index date"] == 0
    assert counts["Over 75 at the index date"] == 1  # 1950-06 on 2026-07-15: 76 whichever day
    # 2008 (17/18), 1950 (75/76), 1950-07 (75/76), procedure rows 1990 and 1991-02 (no day in both)
    assert counts["Age unknown"] == 4
    assert counts["Episodes (new, in the age range)"] == 4  # 2007, 1951, 1950-08; procedure rows 1990 and 1990-04-05


def test_a_parquet_extract_reads_a_partial_birth_date_as_a_csv_does(tmp_path, audited):
    """Parquet text columns go through the same typed reading: the same cases, the same attrition."""
    folder = tmp_path / "input"
    write_deck_input(folder, [f for f in deck_files() if f.id in PARTIAL_DECKS])
    for csv in folder.glob("*.csv"):
        if csv.name != "local_code_map.csv":
            pl.read_csv(csv, infer_schema=False).write_parquet(csv.with_suffix(".parquet"))
            csv.unlink()
    out = tmp_path / "out"
    result = run_cli("run", "--input", folder, "--out", out, "--warehouse", tmp_path / "wh.duckdb")
    assert result.returncode == 0, result.stderr
    for audit in ("csf_leak", "low_back_pain"):
        assert _counts(out, audit) == _counts(audited, audit), audit
        cases = pl.read_csv(out / audit / "cases.csv", infer_schema=False).select("case_id", "age_years")
        expected = pl.read_csv(audited / audit / "cases.csv", infer_schema=False).select("case_id", "age_years")
        assert cases.sort("case_id").equals(expected.sort("case_id")), audit


def test_inspect_counts_a_partial_birth_date_as_read(tmp_path):
    """inspect said "no format found ... not read, e.g.: '2007'" of the birth dates a run reads."""
    folder = tmp_path / "input"
    write_deck_input(folder, [f for f in deck_files() if f.id in PARTIAL_DECKS])
    result = run_cli("inspect", "--input", folder)
    assert result.returncode == 0, result.stderr
    dates = [line.split() for line in result.stdout.splitlines() if line.lstrip().startswith("date ")]
    assert {d[1] for d in dates} == {"patient_birth_date:", "birth_date:"}, result.stdout
    assert all(d[2:4] == ["none", "needed;"] for d in dates), result.stdout
    assert "reads 10 of 10" in result.stdout and "reads 7 of 7" in result.stdout, result.stdout
    assert "not read" not in result.stdout, result.stdout
