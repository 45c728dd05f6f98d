"""Time the volume check (``orders.volume.monthly``) of a monthly job: one month's extract judged with and without the
months the warehouse holds (the gate's held orders view over the store's Parquet files, one file per monthly load).

    python -m benchmarks.volume_bench --scratch /tmp/vb [--months 24] [--per-month 400000]

Writes the held files once (kept in --scratch for the next call), then times the check three times each way
(wall and ``time.process_time``). Figures: benchmarks/profile_notes.md, "Stop 43".
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import duckdb
import polars as pl

from pipeline.quality import gate, sql_checks, validate
from pipeline.quality.held import Held
from pipeline.sqltext import literal

MONTH_SECONDS = 30 * 86_400  # the orders of a month spread over its first 30 days (every month then covers whole)


def _month(i: int) -> tuple[int, int]:
    """The i-th month from 2024-07."""
    return 2024 + (6 + i) // 12, (6 + i) % 12 + 1


def _orders_sql(n: int, year: int, month: int, ids: str) -> str:
    step_us = MONTH_SECONDS * 1_000_000 // n
    return (
        f"SELECT range + 2 AS source_line, {ids} || range AS order_id, 'P' || (range % 50000) AS patient_id, "
        f"TIMESTAMPTZ '{year}-{month:02d}-01 05:00:00+00' + to_microseconds(range * {step_us}) AS ordered_at "
        f"FROM range({n})"
    )


def held_store(scratch: Path, months: int, per_month: int) -> Held:
    """A warehouse store of ``months`` monthly loads of ``per_month`` orders each (written once)."""
    folder = scratch / "wh.duckdb.sources" / "imaging_orders"
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    loads = []
    for i in range(months):
        year, month = _month(i)
        load_id = f"run{i:03d}-imaging_orders"
        loads.append(("imaging_orders", load_id, f"{year}-{month:02d}", f"{year}-{month:02d}"))
        path = folder / f"{load_id}.parquet"
        if not path.exists():
            rows = _orders_sql(per_month, year, month, f"'O{i:03d}-'")
            con.execute(f"COPY ({rows}) TO {literal(path)} (FORMAT parquet)")
    con.close()
    return Held(
        folder.parent,
        None,
        pl.DataFrame(loads, schema=["table_name", "load_id", "first_month", "last_month"], orient="row"),
        pl.DataFrame(schema={"load_id": pl.Utf8, "source_line": pl.Int64}),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scratch", type=Path, required=True)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--per-month", type=int, default=400_000)
    a = ap.parse_args()
    held = held_store(a.scratch, a.months, a.per_month)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    year, month = _month(a.months)  # the month after the held ones
    delivered = _orders_sql(a.per_month, year, month, "'N-'")
    con.execute(f"CREATE TABLE src_imaging_orders AS {delivered}")
    params = validate.resolve_params({"now": dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC), "site_timezone": "America/New_York"})
    _, run = sql_checks.check_monthly_volume(params)
    for label in ("the extract alone", "with the warehouse's orders"):
        if label != "the extract alone":
            gate._view_held(con, held, {})
        for _ in range(3):
            wall, cpu = time.perf_counter(), time.process_time()
            violated, judged = run(con)[:2]
            print(
                f"{label}: {judged} month(s) judged, {violated} low; "
                f"{time.perf_counter() - wall:.3f} s wall, {time.process_time() - cpu:.3f} CPU-s"
            )


if __name__ == "__main__":
    main()
