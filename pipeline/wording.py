"""Counts in words, for every sentence a reader sees (report, log, CLI): "1 order", "2 orders", never "1 orders"."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` with thousands separators and ``noun`` in the number it takes (``plural``: when not noun + "s")."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
