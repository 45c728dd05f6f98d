"""Text that goes into SQL: quoted identifiers and literals (one home for both).

Values go to DuckDB as bound parameters wherever the statement allows one; where it does
not (file paths in ``read_parquet``/``COPY ... TO``, ``SET`` values, generated column
lists), they pass through these functions, never pasted in raw.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import PurePath


def ident(name: str) -> str:
    """A double-quoted SQL identifier; an embedded double quote is doubled."""
    return '"' + str(name).replace('"', '""') + '"'


def literal(value: str | os.PathLike) -> str:
    """A single-quoted SQL string literal (an embedded quote doubled); a path in its POSIX form."""
    text = value.as_posix() if isinstance(value, PurePath) else os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    return "'" + text.replace("'", "''") + "'"


def typed_literal(value) -> str:
    """A SQL literal of a Python value: TIMESTAMPTZ / DATE for datetimes and dates, numbers as written, else text."""
    if isinstance(value, (dt.datetime, dt.date)):
        kind = "TIMESTAMPTZ" if isinstance(value, dt.datetime) else "DATE"
        return f"{kind} '{value.isoformat()}'"
    if isinstance(value, (int, float)):
        return repr(value)
    return literal(str(value))
