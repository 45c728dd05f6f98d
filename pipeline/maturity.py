"""When a month's figures are final, and how far the loaded data reaches.

A month reports the cases whose index falls in it. Data dated up to the month's end plus the
audit's horizon can still change them (later evidence, a later case taking an order): each
manifest says its horizon as ``[maturity] days_after_month`` (parameters or numbers, summed; see
the audit's DESIGN.md for why). So the month is **final** once the loaded data reaches (see
``data_through``) the month's end + the horizon, and **provisional** until then.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import duckdb

from pipeline import db, months
from pipeline.config import Config

# the instants each feed carries: the loaded data reaches the earliest of their latest values
EVENT_COLUMNS = (("stg_procedures", "performed_at"), ("stg_imaging_orders", "ordered_at"), ("stg_diagnoses", "recorded_at"))


@dataclass(frozen=True)
class Maturity:
    data_through: dt.datetime | None  # UTC; None when nothing is loaded
    horizon_days: float  # evidence + audit + context windows
    site_timezone: str

    def month_end(self, month: str) -> dt.datetime:
        """The first instant after the month (site-local midnight of the next month's first day), UTC."""
        y, m = map(int, months.shift(month, 1).split("-"))
        return dt.datetime(y, m, 1, tzinfo=ZoneInfo(self.site_timezone)).astimezone(dt.UTC)

    def final_from(self, month: str) -> dt.datetime:
        """The instant the loaded data must reach for the month to be final (absolute days, like the windows)."""
        return self.month_end(month) + dt.timedelta(days=self.horizon_days)

    def is_final(self, month: str) -> bool:
        return self.data_through is not None and self.data_through >= self.final_from(month)

    def status(self, month: str) -> str:
        return "final" if self.is_final(month) else "provisional"

    def local_date(self, instant: dt.datetime | None) -> dt.date | None:
        return None if instant is None else instant.astimezone(ZoneInfo(self.site_timezone)).date()

    def as_dict(self) -> dict:
        return {
            "data_through": None if self.data_through is None else self.data_through.isoformat(),
            "data_through_date": str(self.local_date(self.data_through) or ""),
            "horizon_days": self.horizon_days,
            "site_timezone": self.site_timezone,
        }

    @classmethod
    def from_dict(cls, d: dict | None) -> Maturity | None:
        if not d:
            return None
        through = d.get("data_through")
        return cls(dt.datetime.fromisoformat(through) if through else None, float(d["horizon_days"]), str(d["site_timezone"]))


def assess(con: duckdb.DuckDBPyConnection, cfg: Config, now: dt.datetime, horizon_days: float) -> Maturity:
    """How far the loaded data reaches: the earliest of the latest procedure, order and diagnosis
    instants (a feed without rows does not hold the others back), never later than ``now``."""
    present = db.tables(con)
    parts = [f"SELECT max({col}) AS last_at FROM {table}" for table, col in EVENT_COLUMNS if table in present]
    through = None
    if parts:
        through = con.execute(f"SELECT min(last_at) FROM ({' UNION ALL '.join(parts)})").fetchall()[0][0]
    if through is not None:
        through = min(through.astimezone(dt.UTC), now)
    return Maturity(through, horizon_days, cfg.site_timezone)


def describe(maturity: Maturity | None, months: list[str]) -> dict | None:
    """What the report says about the period's maturity: provisional with the date it becomes final, or final."""
    if maturity is None or not months:
        return None
    last = max(months)
    final_from = maturity.final_from(last)
    return {
        "status": maturity.status(last),
        "data_through": str(maturity.local_date(maturity.data_through) or "no data"),
        "final_from": str(maturity.local_date(final_from)),
        "last_index_date": str(maturity.local_date(maturity.month_end(last) - dt.timedelta(seconds=1))),
        "horizon_days": f"{maturity.horizon_days:g}",
    }
