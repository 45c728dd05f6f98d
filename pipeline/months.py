"""Calendar months as 'YYYY-MM' text: one home for the arithmetic (next month, ranges, windows)."""

from __future__ import annotations

import re

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def is_month(text: str | None) -> bool:
    return bool(text) and bool(MONTH.match(text))


def all_months(first: str | None, last: str | None) -> str:
    """A run over every loaded month in words, as the report, its index page, the log, run.json and the site
    index all say it: which months it spans (two audits' 'all' over one extract can differ)."""
    if not (first and last):
        return "all months (none)"
    return f"all months, {first} to {last}" if first != last else first


def index(month: str) -> int:
    """Months since year 0: '2026-01' -> 2026 * 12."""
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def label(month_index: int) -> str:
    """The inverse of ``index``."""
    return f"{month_index // 12:04d}-{month_index % 12 + 1:02d}"


def shift(month: str, by: int) -> str:
    """The month ``by`` months after (before, when negative) ``month``."""
    return label(index(month) + by)


def month_range(first: str, last: str) -> list[str]:
    """Every month from ``first`` to ``last``, both included (empty when first is after last)."""
    return [label(i) for i in range(index(first), index(last) + 1)]
