"""Value maps: a site's words for the contract's coded values, shipped EHR defaults, and unknown values named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from conftest import DX_HEADER, ORDER_HEADER, PROC_HEADER, run_cli, write_csv

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.ingest import value_maps
from pipeline.ingest.contract import CONTRACT_BY_NAME
from pipeline.resources import expectations_dir

# one case (complete spine at day 4 after PR1) and a second patient's orders, each with an EHR status word
STATUSES = {
    "O1": "Final",
    "O2": "Resulted",
    "O3": "VERIFIED",
    "O4": "Canceled",  # a cancelled order: excluded, not rejected
    "O5": "Sent",
    "O6": "Lost",  # no map knows it
    "O7": "Lost",
}


def _input(d: Path) -> Path:
    write_csv(
        d / "procedures.csv",
        PROC_HEADER,
        [["PR1", "MRN-1", "2025-06-02 09:00:00", "62323", "Pain", "1970-05-05"]],
    )
    codes = {"O1": "72156", "O2": "72157", "O3": "72158", "O4": "72148", "O5": "72149", "O6": "72148", "O7": "72148"}
    rows = [
        [oid, "MRN-1", f"2025-06-0{6 + (i > 2)} 10:{i:02d}:00", codes[oid], "Neurology", "G97.1", status]
        for i, (oid, status) in enumerate(STATUSES.items())
    ]
    rows += [[f"X{i}", "MRN-1", "2025-06-20 10:00:00", "71046", "Neurology", "", "Final"] for i in range(30)]
    write_csv(d / "imaging_orders.csv", ORDER_HEADER, rows)
    write_csv(d / "diagnoses.csv", DX_HEADER, [["MRN-1", "G97.1", "2025-06-04 08:00:00"]])
    return d


@pytest.fixture(scope="module")
def ehr_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("values")
    d = _input(base / "in")
    out = base / "out"
    r = run_cli("run", "--input", d, "--out", out, "--warehouse", base / "wh.duckdb")
    assert r.returncode == 0, r.stderr
    return base, out, r.stderr


def _verdicts(out: Path) -> dict[str, tuple[str, str]]:
    audited = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
    return {r["order_id"]: (r["verdict"], r["reasons"], r["status"]) for r in audited.iter_rows(named=True)}


def test_ehr_status_words_are_read_through_the_shipped_map(ehr_run):
    _, out, _ = ehr_run
    got = _verdicts(out)
    assert got["O1"] == ("appropriate", "mri_complete_spine_wwo", "completed")
    assert got["O3"][2] == "completed"  # VERIFIED: matched case-insensitively
    assert got["O4"] == ("excluded", "cancelled", "cancelled")  # Canceled: excluded, as a cancelled order is
    assert got["O5"][2] == "ordered"
    assert "O6" not in got and "O7" not in got  # unknown: set aside, never guessed


def test_unknown_value_is_named_with_rows_and_config_lines(ehr_run):
    _, out, stderr = ehr_run
    line = next(ln for ln in stderr.splitlines() if "no map knows" in ln)
    assert "imaging_orders.status" in line and "'Lost' (2 rows)" in line and "its rows are set aside" in line
    assert '[values.imaging_orders.status] / "Lost" = "?"   # one of ordered, scheduled, completed, cancelled' in line
    info = json.loads((out / "run.json").read_text())
    (unknown,) = info["unknown_values"]
    assert (unknown["table"], unknown["column"], unknown["values"], unknown["rows"]) == (
        "imaging_orders",
        "status",
        [{"value": "Lost", "rows": 2}],
        2,
    )
    assert unknown["config_lines"] == [
        "[values.imaging_orders.status]",
        '"Lost" = "?"   # one of ordered, scheduled, completed, cancelled',
    ]
    rejects = pl.read_csv(out / "csf_leak" / "rejects.csv", infer_schema=False).filter(pl.col("column_name") == "status")
    assert sorted(rejects["value"]) == ["Lost", "Lost"]  # the delivered word, as the site writes it
    html = (out / "csf_leak" / "report.html").read_text()
    section = html[html.index("Values no map knows") :]
    assert "imaging_orders.status</td><td>Lost</td>" in section
    assert "&#34;Lost&#34; = &#34;?&#34;" in section or "&quot;Lost&quot; = &quot;?&quot;" in section


def test_config_lines_map_the_unknown_value_and_override_the_shipped_map(ehr_run):
    base, _, _ = ehr_run
    cfg = base / "site.toml"
    # the lines the message gave, filled in; and a shipped word read another way by this site
    cfg.write_text('[values.imaging_orders.status]\n"Lost" = "cancelled"\n"sent" = "scheduled"\n')
    out = base / "out2"
    r = run_cli("run", "--input", base / "in", "--out", out, "--warehouse", base / "wh2.duckdb", "--config", cfg)
    assert r.returncode == 0, r.stderr
    got = _verdicts(out)
    assert got["O6"] == ("excluded", "cancelled", "cancelled")
    assert got["O5"][2] == "scheduled"
    assert json.loads((out / "run.json").read_text())["unknown_values"] == []
    assert "no map knows" not in r.stderr


def test_a_blocked_gate_names_the_unknown_values(tmp_path):
    d = _input(tmp_path / "in")
    path = d / "imaging_orders.csv"
    path.write_text(path.read_text().replace(",Final\n", ",In Review\n"))  # 30 of 37 orders: over the 20% share
    r = run_cli("run", "--input", d, "--out", tmp_path / "out", "--warehouse", tmp_path / "wh.duckdb")
    assert r.returncode == 3, r.stderr
    message = r.stderr[r.stderr.index("order-audit: error:") :]
    assert "orders.status.allowed" in message
    assert "'In Review' (31 rows)" in message and '"In Review" = "?"' in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[values.imaging_orders.status]\n"Lost" = "gone"\n', "\"Lost\" = 'gone': the value must be one of ordered, scheduled"),
        ('[values.imaging_orders.status]\n"Lost" = "?"\n', "the value must be one of"),
        ('[values.imaging_orders.priority]\n"STAT" = "stat"\n', "'priority' is not a coded column of imaging_orders"),
        ('[values.orders.status]\n"Lost" = "cancelled"\n', "unknown table 'orders'"),
        ('[values.procedures.needle_type]\nQuincke = "pencil_point"\nBlunt = 3\n', '"Blunt" = 3'),
    ],
)
def test_value_map_lines_are_checked_when_the_config_is_read(tmp_path, text, message):
    path = tmp_path / "site.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in err.value.message, err.value.message


def test_config_overrides_shipped_and_contract_words_map_to_themselves(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text('[values.procedures.needle_type]\nQuincke = "pencil_point"\n')
    cfg = load_config(path)
    readings = value_maps.effective_map("procedures", "needle_type", cfg.values)
    assert readings["quincke"] == ("pencil_point", "config")
    assert readings["whitacre"][0] == "pencil_point" and readings["whitacre"][1].startswith("shipped map")
    assert readings["cutting"] == ("cutting", "contract")


def test_a_column_of_many_unknown_values_is_counted_not_listed(tmp_path):
    import duckdb

    typed = tmp_path / "t.parquet"
    values = [f"MRN{i:05d}" for i in range(value_maps.MAX_NAMED_VALUES + 1)] + ["completed"]
    pl.DataFrame({"status": values}).write_parquet(typed)
    (found,) = value_maps.unknown_values(duckdb.connect(), typed, "imaging_orders", "orders.csv", ["status"])
    assert (found.values, found.distinct, found.rows) == ([], value_maps.MAX_NAMED_VALUES + 1, value_maps.MAX_NAMED_VALUES + 1)
    assert "MRN" not in found.message() and "check the column mapping and the delimiter" in found.message()


def test_contract_vocabularies_agree_with_the_suites():
    """The value maps read onto the sets the gate checks: one list in contract.py, the same in expectations/."""
    procedures = json.loads((expectations_dir() / "procedures.json").read_text())
    sets = {
        e["kwargs"]["column"]: tuple(e["kwargs"]["value_set"])
        for t in procedures["tables"]
        for e in t["expectations"]
        if e["type"] == "expect_column_values_to_be_in_set"
    }
    assert sets == CONTRACT_BY_NAME["procedures"].allowed_values
    orders = json.loads((expectations_dir() / "imaging_orders.json").read_text())
    query = next(
        e["kwargs"]["unexpected_rows_query"]
        for t in orders["tables"]
        for e in t["expectations"]
        if e["meta"]["check_id"] == "orders.status.allowed"
    )
    listed = tuple(re.findall(r"'(\w+)'", query.split("NOT IN", 1)[1]))
    assert listed == CONTRACT_BY_NAME["imaging_orders"].allowed_values["status"]


def test_shipped_map_rows_are_well_formed():
    shipped = pl.read_csv(value_maps.SHIPPED, infer_schema=False)
    allowed = value_maps.constrained_columns()
    for row in shipped.iter_rows(named=True):
        assert row["contract_value"] in allowed[(row["table"], row["column"])], row
    keys = shipped.select(pl.col("table"), pl.col("column"), pl.col("site_value").str.to_lowercase())
    assert keys.is_duplicated().sum() == 0, "a site word mapped twice"
