"""A load whose every time is UTC midnight holds dates: each becomes its UTC calendar date, read as a bare date is.

Some exporters write a date-only value as an instant at UTC midnight (a FHIR export's
``"authoredOn": "2026-04-03T00:00:00Z"``, a Parquet ``Datetime(UTC)`` column of dates). Read as an instant, in a
US site time zone it is the evening of the day before, which moved an order across the 72-hour line and the
audit's windows. The rule is the one stg_diagnoses.sql applies to a load whose every time is the site's local
midnight: ten or more values in the load's column, none of them a time of day. Bare dates in the same column
count as dates (they do not break the rule); a load with one instant at another time is read as delivered.
Such a column's instants are moved to the site's local midnight of their UTC date and flagged ``<col>_is_date``,
exactly what the parse gives the bare date: every later stage (the gate, the months, the models) sees a date.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

from pipeline.ingest.contract import TableContract
from pipeline.sqltext import ident, literal

log = logging.getLogger(__name__)

# as many values as stg_diagnoses.sql asks of a load before it reads its local midnights as dates: fewer could be
# instants that happen to fall on midnight
AT_LEAST = 10
DAY_US = 86_400_000_000


def as_dates(con: duckdb.DuckDBPyConnection, typed_path: Path, contract: TableContract, tz: str, label: str) -> list[str]:
    """The typed file's instant columns whose every time is UTC midnight, read as dates: the ``SELECT * REPLACE``
    expressions that rewrite them (the loader rewrites the file with them: ``load.rewrite_typed``), none for a load of
    real times. One scan of the instant columns."""
    src = f"read_parquet({literal(typed_path)})"
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {src})").fetchall())
    cols = [c for c in contract.instants if types.get(c) == "TIMESTAMP WITH TIME ZONE" and f"{c}_is_date" in types]
    if not cols:
        return []
    tests = []
    for c in cols:
        v, is_date = ident(c), ident(f"{c}_is_date")
        midnight = f"epoch_us({v}) % {DAY_US} = 0"
        tests.append(
            f"count({v}) >= {AT_LEAST} AND count({v}) FILTER (WHERE NOT coalesce({is_date}, false) AND NOT {midnight}) = 0"
            f" AND count({v}) FILTER (WHERE NOT coalesce({is_date}, false)) > 0"
        )
    found = con.execute(f"SELECT {', '.join(tests)} FROM {src}").fetchall()[0]
    dated = [c for c, yes in zip(cols, found, strict=True) if yes]
    if not dated:
        return []
    replaced = []
    for c in dated:
        v, is_date = ident(c), ident(f"{c}_is_date")
        # the UTC date (the connection's zone is UTC), then that date's local midnight as the parse reads a bare date
        replaced += [
            f"CASE WHEN {v} IS NULL OR {is_date} THEN {v} ELSE timezone({literal(tz)}, CAST(CAST({v} AS DATE) AS TIMESTAMP)) END"
            f" AS {v}",
            f"{is_date} OR {v} IS NOT NULL AS {is_date}",
        ]
        if f"_ambiguous_{c}" in types:  # a moved instant is no repeated autumn hour
            amb = ident(f"_ambiguous_{c}")
            replaced.append(f"CASE WHEN {v} IS NULL OR {is_date} THEN {amb} ELSE false END AS {amb}")
    for c in dated:
        log.info(
            "%s: every %s is UTC midnight: read as dates (each its UTC calendar date), a date column exported as instants",
            label,
            c,
        )
    return replaced
