"""Shapes real FHIR exporters write that the mapping reads as a site means them (docs/FHIR.md).

* dates exported as instants at UTC midnight (``"authoredOn": "2025-06-06T00:00:00Z"``): a load whose every time
  (ten or more) is UTC midnight is read as dates, each its UTC calendar date, as a bare date is; read as instants,
  in a US site zone they fell on the evening before and an order 74 hours after its procedure was premature.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest
from conftest import run_cli, write_small_input
from fhir_export import export_extract


@pytest.fixture
def export(tmp_path) -> Path:
    d = tmp_path / "export"
    export_extract(write_small_input(tmp_path / "csv"), d, lines_per_file=1000, variety=False)
    (d / "manifest.json").unlink(missing_ok=True)  # the tests change the counts of resources
    return d


def _resources(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(path: Path, resources: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8")


def _run(tmp_path: Path, export: Path, *args: str) -> tuple[Path, Path]:
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", export, "--out", out, "--warehouse", wh, "--no-validate", *args)
    assert r.returncode == 0, r.stderr
    return out, wh


def _orders(out: Path) -> dict[str, dict]:
    orders = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
    return {row["order_id"]: row for row in orders.iter_rows(named=True)}


# ----------------------------------------------------------------------------------------------
# 1. dates exported as UTC midnight


def _orders_at_utc_midnight(export: Path, odd: str | None = None) -> None:
    """PR1 at 22:00 New York on 2025-06-02; every order (twelve) authored on 2025-06-06 as UTC midnight, but
    ``odd``'s, which is at 10:00 UTC when given. O1's date starts 74 hours after PR1 (not premature); as an
    instant it is 20:00 New York on 2025-06-05, 70 hours after (premature)."""
    procedures = _resources(export / "Procedure.000.ndjson")
    _write(
        export / "Procedure.000.ndjson",
        [p | {"performedDateTime": "2025-06-02T22:00:00-04:00"} if p["id"] == "PR1" else p for p in procedures],
    )
    held = _resources(export / "ServiceRequest.000.ndjson")
    orders = held + [r | {"id": f"{r['id']}-{copy}"} for copy in ("b", "c") for r in held]
    _write(
        export / "ServiceRequest.000.ndjson",
        [r | {"authoredOn": "2025-06-06T10:00:00Z" if r["id"] == odd else "2025-06-06T00:00:00Z"} for r in orders],
    )


def test_a_load_of_utc_midnights_is_read_as_dates(tmp_path, export):
    _orders_at_utc_midnight(export)
    out, wh = _run(tmp_path, export)
    orders = _orders(out)
    assert len(orders) == 12
    assert [(orders[o]["hours_since_index"], orders[o]["is_premature"]) for o in ("O1", "O1-b")] == [("74.0", "false")] * 2
    con = duckdb.connect(str(wh), read_only=True)
    try:
        read = con.execute(
            "SELECT DISTINCT strftime(ordered_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M'), ordered_at_is_date"
            " FROM src_imaging_orders"
        ).fetchall()
    finally:
        con.close()
    assert read == [("2025-06-06 04:00", True)]  # the site's midnight of 2025-06-06 (EDT), flagged a date


def test_a_load_with_one_time_of_day_is_read_as_delivered(tmp_path, export):
    _orders_at_utc_midnight(export, odd="O4-c")
    out, _ = _run(tmp_path, export)
    o1 = _orders(out)["O1"]
    assert (o1["hours_since_index"], o1["is_premature"], o1["verdict"]) == ("70.0", "true", "inappropriate")


def test_a_parquet_column_of_utc_midnights_is_read_as_dates_too(tmp_path):
    """The same rule for an extract: a typed Parquet Datetime(UTC) column of dates (what pandas writes of a date
    column made timestamps) had the same evening-before instants."""
    folder = write_small_input(tmp_path / "in")
    (folder / "imaging_orders.csv").unlink()
    pl.DataFrame(
        {
            "order_id": [f"O{i}" for i in range(1, 13)],
            "patient_id": ["MRN-1"] * 12,
            "ordered_at": pl.Series([dt.datetime(2025, 6, 6)] * 12).dt.replace_time_zone("UTC"),
            "order_code": ["72156", "72157", "72158"] * 4,
            "ordering_department": ["Neurology"] * 12,
            "indication_codes": ["G97.1"] * 12,
            "status": ["completed"] * 12,
        }
    ).write_parquet(folder / "imaging_orders.parquet")
    procedures = (folder / "procedures.csv").read_text(encoding="utf-8")
    (folder / "procedures.csv").write_text(procedures.replace("2025-06-02 09:00:00", "2025-06-02 22:00:00"), encoding="utf-8")
    out, _ = _run(tmp_path, folder)
    assert {(o["hours_since_index"], o["is_premature"]) for o in _orders(out).values()} == {("74.0", "false")}
