"""The engine around an audit, through the real CLI: the audit's parameters from the config, effective
dating of its codes, the patients table, the per-audit output folders and the site index, and the
audits listing. One run of the small input with a few more patients (module scope)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import DX_HEADER, PROC_HEADER, run_cli, write_csv, write_small_input

KEY = {"ORDER_AUDIT_PSEUDONYM_KEY": "engine-test-key"}


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("engine")
    inp = write_small_input(base / "in")
    procedures = pl.read_csv(inp / "procedures.csv", infer_schema=False).rows()
    write_csv(
        inp / "procedures.csv",
        PROC_HEADER,
        [
            *procedures,
            # 62311 is an index procedure until 2016-12-31 (value set valid_to): a case in 2016, none in 2025
            ["PR3", "MRN-3", "2016-06-01 09:00:00", "62311", "Pain clinic", "1970-05-05"],
            ["PR4", "MRN-4", "2025-06-05 09:00:00", "62311", "Pain clinic", "1970-05-05"],
            # no birth date on the procedure: the patients table says 65 -> adult -> a case
            ["PR5", "MRN-5", "2025-06-05 09:00:00", "62323", "Pain clinic", ""],
            # the procedure row says 1970, the patients table (which wins) says a child -> no case
            ["PR6", "MRN-6", "2025-06-05 09:00:00", "62323", "Pain clinic", "1970-05-05"],
        ],
    )
    diagnoses = pl.read_csv(inp / "diagnoses.csv", infer_schema=False).rows()
    leak = [
        [f"MRN-{i}", "G97.1", f"{y}-06-0{d} 08:00:00"] for i, y, d in ((3, 2016, 2), (4, 2025, 6), (5, 2025, 6), (6, 2025, 6))
    ]
    write_csv(inp / "diagnoses.csv", DX_HEADER, [*diagnoses, *leak])
    write_csv(
        inp / "patients.csv", ["patient_id", "birth_date", "sex"], [["MRN-5", "1960-01-01", "F"], ["MRN-6", "2012-03-04", "M"]]
    )
    config = base / "site.toml"
    config.write_text("[audits.csf_leak]\npremature_hours = 12.0\n", encoding="utf-8")  # O4 (24 h) is no longer premature
    out = base / "out"
    result = run_cli("run", "--input", inp, "--out", out, "--config", config, "--no-validate", env=KEY)
    assert result.returncode == 0, result.stderr
    return {"out": out, "stderr": result.stderr, "base": base, "in": inp}


def _csv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False).fill_null("")


def test_the_config_overrides_an_audits_parameter(engine_run):
    orders = {r["order_id"]: r for r in _csv(engine_run["out"] / "csf_leak" / "audited_orders.csv").iter_rows(named=True)}
    assert (orders["O4"]["verdict"], orders["O4"]["reasons"]) == ("inappropriate", "wrong_region")  # premature at 72 h
    info = json.loads((engine_run["out"] / "csf_leak" / "run.json").read_text())
    assert info["audit"]["parameters"]["premature_hours"] == 12.0 and info["audit"]["parameters"]["episode_hours"] == 24.0


def test_a_code_counts_only_while_it_is_in_force(engine_run):
    cases = set(_csv(engine_run["out"] / "csf_leak" / "cases.csv")["case_id"])
    assert "PR3" in cases  # 62311 in 2016, while in force
    assert "PR4" not in cases  # 62311 in 2025, after its valid_to


def test_the_patients_table_gives_the_age_first(engine_run):
    cases = {r["case_id"]: r for r in _csv(engine_run["out"] / "csf_leak" / "cases.csv").iter_rows(named=True)}
    assert cases["PR5"]["age_years"] == "65.0"  # from the patients table only
    assert "PR6" not in cases  # a child by the patients table, whatever the procedure row says


def test_each_audit_has_its_folder_and_the_site_index_lists_them(engine_run):
    out = engine_run["out"]
    # the input has procedures, orders and diagnoses: both shipped audits run, each in its own folder
    assert sorted(p.name for p in out.iterdir()) == ["csf_leak", "index.html", "low_back_pain", "run.json"]
    top = json.loads((out / "run.json").read_text())
    assert top["audits"] == ["csf_leak", "low_back_pain"] and "csf_leak/audited_orders.csv" in top["files"]
    assert "low_back_pain/audited_orders.csv" in top["files"]
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="csf_leak/report.html"' in index and "Imaging for suspected CSF leak" in index
    assert 'href="low_back_pain/report.html"' in index and "Early imaging for uncomplicated low back pain" in index
    for audit_id in ("csf_leak", "low_back_pain"):
        report = (out / audit_id / "report.html").read_text(encoding="utf-8")
        assert 'href="../index.html">All audits and months</a>' in report
    # the log says what each audit did
    lines = engine_run["stderr"].splitlines()
    assert any(line.startswith("order-audit: low_back_pain: ") for line in lines)


def test_an_audit_whose_table_is_missing_is_skipped_and_without_any_audit_the_run_stops(tmp_path):
    inp = write_small_input(tmp_path / "in")
    (inp / "procedures.csv").unlink()
    # without procedures the CSF-leak audit is skipped with a line saying why; the low back pain audit runs
    r = run_cli("run", "--input", inp, "--out", tmp_path / "some", "--no-validate", env=KEY)
    assert r.returncode == 0, r.stderr
    assert "csf_leak skipped: the input has no procedures table" in r.stderr
    assert sorted(p.name for p in (tmp_path / "some").iterdir()) == ["index.html", "low_back_pain", "run.json"]
    # without diagnoses too, no audit can run: the run stops before writing anything
    (inp / "diagnoses.csv").unlink()
    r = run_cli("run", "--input", inp, "--out", tmp_path / "out", "--no-validate", env=KEY)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "required file missing; the audits that need it:" in line, line
    assert not (tmp_path / "out").exists()
    r = run_cli("run", "--input", inp, "--out", tmp_path / "out", "--audit", "nope", env=KEY)
    assert r.returncode == 1 and "--audit nope: no such audit; known: csf_leak" in r.stderr


def test_the_audits_command_lists_ids_versions_and_inputs():
    r = run_cli("audits")
    assert r.returncode == 0, r.stderr
    assert "csf_leak  csf-leak-2026.11.0  Imaging for suspected CSF leak" in r.stdout
    assert "needs: procedures, imaging_orders" in r.stdout and "premature_hours = 72," in r.stdout
    listed = {a["id"]: a for a in json.loads(run_cli("audits", "--json").stdout)}
    assert listed["csf_leak"]["problem"] is None and listed["csf_leak"]["required_tables"] == ["procedures", "imaging_orders"]
    assert listed["low_back_pain"]["required_tables"] == ["diagnoses", "imaging_orders"]
