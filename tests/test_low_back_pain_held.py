"""Where the low back pain audit's feeds are held from (DESIGN.md section 8, "Where the feeds are held from"): the
models low_back_pain__int_diagnoses_held and __int_orders_held (each its row of __int_feeds_held, the rule written
once), run on DuckDB over random instants and checked against the rule computed row by row in Python (zoneinfo): the
site-local day of every row, the first month with at least half as many rows as the busiest, the declared start's
day over it, and the rows before the day held. The model counts by 15 minutes of absolute time (a time zone
conversion per bucket, not per row); the zones here have offsets of :30 and :45 and a 30-minute clock change, and the
instants crowd around local midnights, where a bucket across a day's start would count in the wrong day. The other
feed holds rows of its own years earlier: each feed's day is its own rows'."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest

SQL = Path(__file__).resolve().parents[1] / "audits" / "low_back_pain" / "sql"
FEEDS = {  # model -> (source table, its time column, the model's columns)
    "low_back_pain__int_diagnoses_held": ("stg_diagnoses", "recorded_at", ("diagnoses_held_from", "earlier_diagnoses")),
    "low_back_pain__int_orders_held": ("stg_imaging_orders", "ordered_at", ("orders_held_from", "earlier_orders")),
}
OTHER = {"stg_diagnoses": ("stg_imaging_orders", "ordered_at"), "stg_imaging_orders": ("stg_diagnoses", "recorded_at")}
ZONES = ("America/New_York", "Asia/Kathmandu", "America/St_Johns", "Australia/Lord_Howe")


def _instants(zone: ZoneInfo, seed: int) -> list[dt.datetime]:
    """Rows whose volume grows month by month, half of them within half an hour of a local midnight, a few stray ones
    a year before."""
    rng = random.Random(seed)
    out = []
    for month in range(12):
        first = dt.date(2024, 1 + month, 1)
        for _ in range(20 + 15 * month):
            day = first + dt.timedelta(days=rng.randrange(28 if month == 1 else 30))
            midnight = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
            if rng.random() < 0.5:
                when = midnight + dt.timedelta(seconds=rng.randrange(-1800, 1800))
            else:
                when = midnight + dt.timedelta(seconds=rng.randrange(86400))
            out.append(when.astimezone(dt.UTC))
    out += [dt.datetime(2023, 3, 1, tzinfo=dt.UTC) + dt.timedelta(days=rng.randrange(200)) for _ in range(5)]
    return out


def _by_hand(instants: list[dt.datetime], zone: ZoneInfo, declared: dt.date | None) -> tuple[dt.date, int]:
    days = [t.astimezone(zone).date() for t in instants]
    months: dict[dt.date, int] = {}
    for d in days:
        months[d.replace(day=1)] = months.get(d.replace(day=1), 0) + 1
    busiest = max(months.values())
    held = declared or min(m for m, n in months.items() if 2 * n >= busiest)
    return held, sum(d < held for d in days)


@pytest.mark.parametrize("zone_name", ZONES)
@pytest.mark.parametrize("model", sorted(FEEDS))
def test_the_feeds_are_held_from_the_rule_row_by_row(model, zone_name):
    table, column, (held_column, earlier_column) = FEEDS[model]
    zone = ZoneInfo(zone_name)
    instants = _instants(zone, seed=len(zone_name))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    _feeds(con, table, column)
    con.executemany(f"INSERT INTO {table} VALUES (?)", [[t] for t in instants] + [[None]] * 3)  # undated: no day
    guessed = _by_hand(instants, zone, None)
    assert guessed[0] > dt.date(2024, 1, 1) and guessed[1] > 5  # the growth cuts the first months: the guess misfires
    for declared in (None, dt.date(2024, 1, 1), dt.date(2024, 3, 15), dt.date(2024, 3, 16)):
        con.execute(
            "CREATE OR REPLACE TABLE low_back_pain__parameters AS SELECT ? AS site_timezone,"
            " CAST(? AS DATE) AS declared_start_date",
            [zone_name, declared],
        )
        got = _held(con, model, held_column, earlier_column)
        assert got == [(*_by_hand(instants, zone, declared), declared is not None)], (zone_name, declared)


@pytest.mark.parametrize("model", sorted(FEEDS))
def test_nothing_dated_is_held_from_nowhere_declared_or_not(model):
    """A feed without a dated row holds nothing: NULL, whatever the site declares (an empty feed shows nothing held)."""
    table, column, (held_column, earlier_column) = FEEDS[model]
    con = duckdb.connect()
    _feeds(con, table, column)
    con.execute(f"INSERT INTO {table} VALUES (NULL)")
    for declared in (None, dt.date(2024, 3, 15)):
        con.execute(
            "CREATE OR REPLACE TABLE low_back_pain__parameters AS SELECT 'America/New_York' AS site_timezone,"
            " CAST(? AS DATE) AS declared_start_date",
            [declared],
        )
        assert _held(con, model, held_column, earlier_column) == [(None, 0, False)]


def _feeds(con: duckdb.DuckDBPyConnection, table: str, column: str) -> None:
    """The feed under test's table, and the other feed's with rows of its own: a feed's day is its own rows'."""
    other, other_column = OTHER[table]
    con.execute(f"CREATE TABLE {table} ({column} TIMESTAMPTZ)")
    con.execute(f"CREATE TABLE {other} ({other_column} TIMESTAMPTZ)")
    stray = [[dt.datetime(2020, 1, 1, 12, tzinfo=dt.UTC) + dt.timedelta(days=40 * i)] for i in range(30)]
    con.executemany(f"INSERT INTO {other} VALUES (?)", stray)


def _held(con: duckdb.DuckDBPyConnection, model: str, held_column: str, earlier_column: str) -> list[tuple]:
    """``model``'s row, int_feeds_held built first as the runner would (over the parameters of the moment)."""
    feeds = (SQL / "low_back_pain__int_feeds_held.sql").read_text(encoding="utf-8")
    con.execute(f"CREATE OR REPLACE TABLE low_back_pain__int_feeds_held AS {feeds}")
    sql = (SQL / f"{model}.sql").read_text(encoding="utf-8")
    return con.execute(f"SELECT {held_column}, {earlier_column}, is_declared_start FROM ({sql})").fetchall()
