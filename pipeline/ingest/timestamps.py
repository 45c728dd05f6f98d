"""Timestamp and date columns -> instants in UTC and dates, as streamable Polars expressions.

ISO 8601 is always read (the canonical extract); a table's configured strftime formats
(``[formats.<table>] timestamp_formats``, ``date_formats``) are tried first, in order.
"""

from __future__ import annotations

import polars as pl

from pipeline.ingest import formats as formats_mod
from pipeline.ingest.source_store import ERR

SUFFIX = r"^(\.\d{1,9})?([Zz]|[+-]\d{2}:?\d{2})?$"
ISO_EXAMPLE = "ISO 8601 like 2025-03-07 10:00:00 or 2025-03-07T10:00:00-05:00"
UNPARSEABLE = f"unparseable timestamp: expected {ISO_EXAMPLE}"
UNPARSEABLE_PREFIX = "unparseable timestamp"
UNPARSEABLE_DATE_PREFIX = "unparseable date"
DST_GAP = "local time does not exist in the site time zone (DST gap)"
BAD_OFFSET = "impossible UTC offset: outside -14:00 to +14:00 (or minutes over 59)"
MAX_OFFSET_MINUTES = 14 * 60
# a time of hours and minutes with an offset, no seconds: 'YYYY-MM-DD HH:MM' then Z, +HHMM or +HH:MM
NO_SECONDS_LENGTHS = (17, 21, 22)
OFFSET_STARTS = ("Z", "z", "+", "-")


def text(col: str) -> pl.Expr:
    """Trimmed text; blank values are missing (the CSV reader already reads empty cells as null)."""
    return blank_as_null(pl.col(col).cast(pl.String).str.strip_chars())


def blank_as_null(s: pl.Expr) -> pl.Expr:
    """An empty string as null. Given an expression, Polars computes it twice here: pass a column
    (`text` in two steps) where it runs on every row."""
    # (not `.replace("", None)`: that expression is not streamable and made Polars hold the whole file)
    return pl.when(s == "").then(None).otherwise(s)


def unparseable_message(formats: tuple[str, ...]) -> str:
    if not formats:
        return UNPARSEABLE
    return f"{UNPARSEABLE_PREFIX}: expected {' or '.join(formats)} (timestamp_formats), or {ISO_EXAMPLE}"


def _iso_steps(c: pl.Expr, t: str) -> list[list[pl.Expr]]:
    """Every accepted ISO form padded to 'YYYY-MM-DD HH:MM:SS' and read with ONE explicit format;
    an optional fraction and offset are read from the short suffix. Each step is its own
    column (Polars would otherwise repeat the shared sub-expressions)."""
    raw = c.cast(pl.String).str.strip_chars()
    off, offh, offm, hm = pl.col(t + "off"), pl.col(t + "offh"), pl.col(t + "offm"), pl.col(t + "hm")
    return [
        [raw.str.replace("T", " ", literal=True, n=1).alias(t + "norm")],
        # hours and minutes with an offset, no seconds (ISO 8601 allows it: 2025-06-06T10:00Z, 10:00-05:00): looked
        # for in the values of those lengths only, so the rows with seconds (nearly all) cost an integer comparison
        [
            pl.when(
                pl.when(pl.col(t + "norm").str.len_bytes().is_in(NO_SECONDS_LENGTHS))
                .then(pl.col(t + "norm"))
                .str.slice(16, 1)
                .is_in(OFFSET_STARTS)
            )
            .then(pl.col(t + "norm"))
            .alias(t + "hm")
        ],
        [
            pl.when(pl.col(t + "norm").str.len_bytes() == 10)
            .then(pl.col(t + "norm") + " 00:00:00")
            .when(pl.col(t + "norm").str.len_bytes() == 16)
            .then(pl.col(t + "norm") + ":00")
            .otherwise(pl.coalesce(hm.str.slice(0, 16) + ":00" + hm.str.slice(16), pl.col(t + "norm")))
            .alias(t + "padded"),
            (pl.col(t + "norm").str.len_bytes() == 10).alias(t + "date"),
        ],
        [
            # null when empty (nearly every row): the three patterns below then skip it
            pl.when(pl.col(t + "padded").str.len_bytes() > 19).then(pl.col(t + "padded").str.slice(19)).alias(t + "suffix"),
            # cache=False: the timestamps are nearly all distinct, and Polars' per-value
            # cache made this step take 1.8x as long
            pl.col(t + "padded")
            .str.slice(0, 19)
            .str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False, time_unit="us", cache=False)
            .alias(t + "wall0"),
        ],
        [
            pl.col(t + "suffix").str.extract(r"([Zz]|[+-]\d{2}:?\d{2})$", 1).alias(t + "off"),
            pl.col(t + "suffix")
            .str.extract(r"^\.(\d{1,9})", 1)
            .str.slice(0, 6)
            .str.pad_end(6, "0")
            .cast(pl.Int64, strict=False)
            .fill_null(0)
            .alias(t + "micros"),
            (pl.col(t + "norm").is_not_null() & (pl.col(t + "norm") != "")).alias(t + "present"),
        ],
        [
            pl.col(t + "off").str.slice(1, 2).cast(pl.Int64, strict=False).alias(t + "offh"),
            pl.col(t + "off").str.slice(-2, 2).cast(pl.Int64, strict=False).alias(t + "offm"),
        ],
        [
            (pl.col(t + "wall0") + pl.duration(microseconds=pl.col(t + "micros"))).alias(t + "wall"),
            pl.when(off.str.to_uppercase() == "Z")
            .then(0)
            .otherwise(pl.when(off.str.starts_with("-")).then(-1).otherwise(1) * (offh * 60 + offm))
            .alias(t + "offset"),
            (
                pl.col(t + "present")
                & (pl.col(t + "wall0").is_null() | ~pl.col(t + "suffix").str.contains(SUFFIX).fill_null(True))
            ).alias(t + "bad"),
            # +25:00 or -99:99 would shift the instant by more than a day (and move the 72-hour line)
            ((offm > 59) | (offh * 60 + offm > MAX_OFFSET_MINUTES)).fill_null(False).alias(t + "badoff"),
        ],
    ]


def _format_steps(c: pl.Expr, t: str, fmts: tuple[str, ...]) -> list[list[pl.Expr]]:
    """The configured formats, tried in order before the ISO reading (which stays the fallback)."""
    raw = c.cast(pl.String).str.strip_chars()
    parsed = []
    for i, fmt in enumerate(fmts):
        value = raw.str.to_datetime(fmt, strict=False, time_unit="us", cache=False)
        if formats_mod.has_offset(fmt):
            value = value.dt.convert_time_zone("UTC").dt.replace_time_zone(None)  # the UTC wall clock, offset 0
        parsed.append(value.alias(f"{t}f{i}"))
    cols = [pl.col(f"{t}f{i}") for i in range(len(fmts))]
    wall = pl.coalesce([*cols, pl.when(~pl.col(t + "bad")).then(pl.col(t + "wall"))])
    offset = date = None
    for i, (col, fmt) in enumerate(zip(cols, fmts, strict=True)):
        off_i = pl.lit(0 if formats_mod.has_offset(fmt) else None, pl.Int64)
        date_i = pl.lit(formats_mod.is_date_only(fmt))
        offset = pl.when(col.is_not_null()).then(off_i) if i == 0 else offset.when(col.is_not_null()).then(off_i)
        date = pl.when(col.is_not_null()).then(date_i) if i == 0 else date.when(col.is_not_null()).then(date_i)
    matched = pl.any_horizontal([col.is_not_null() for col in cols])
    return [
        parsed,
        [
            wall.alias(t + "wall"),
            offset.otherwise(pl.col(t + "offset")).alias(t + "offset"),
            date.otherwise(pl.col(t + "date")).alias(t + "date"),
            (~matched & pl.col(t + "bad")).alias(t + "bad"),
            (~matched & pl.col(t + "badoff")).alias(t + "badoff"),
        ],
    ]


def with_instant(lf: pl.LazyFrame, col: str, dtype: pl.DataType, tz: str, fmts: tuple[str, ...] = ()) -> pl.LazyFrame:
    """Replace one timestamp column by its instant in UTC, with `<col>_is_date`, `_ambiguous_<col>`
    and the problem column `_err_<col>`.

    Speed matters here (tens of millions of rows): the canonical ISO forms take one explicit
    format (see `_iso_steps`). Local wall-clock times become instants in the site zone; the
    repeated autumn hour is read as the earlier instant and flagged.
    """
    c = pl.col(col)
    t = f"_t_{col}_"  # prefix of the working columns, dropped at the end
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return lf.with_columns(
            c.dt.convert_time_zone("UTC"),
            pl.lit(False).alias(f"{col}_is_date"),
            pl.lit(False).alias(f"_ambiguous_{col}"),
            pl.lit(None, pl.String).alias(ERR + col),
        )
    if isinstance(dtype, (pl.Date, pl.Datetime)):
        steps = [
            [
                c.cast(pl.Datetime("us")).alias(t + "wall"),
                pl.lit(None, pl.Int64).alias(t + "offset"),
                pl.lit(isinstance(dtype, pl.Date)).alias(t + "date"),
                pl.lit(False).alias(t + "bad"),
                pl.lit(False).alias(t + "badoff"),
            ]
        ]
    else:
        steps = _iso_steps(c, t) + (_format_steps(c, t, fmts) if fmts else [])
    wall, offset, bad, badoff = pl.col(t + "wall"), pl.col(t + "offset"), pl.col(t + "bad"), pl.col(t + "badoff")
    # The site zone's reading is one time-zone lookup per row (the costliest step here). A wall time
    # with one instant is read and done; only those with none or two (the DST gap, the repeated autumn
    # hour: a few rows in a year) are looked up again, as the earlier instant and with the test below
    # that the same wall time comes one hour later. Polars skips null rows, so the others cost nothing.
    twice = pl.when(pl.col(t + "unique").is_null()).then(wall)
    steps += [
        [
            wall.dt.replace_time_zone(tz, ambiguous="null", non_existent="null").alias(t + "unique"),
            (wall - pl.duration(minutes=offset)).dt.replace_time_zone("UTC").alias(t + "from_offset"),
        ],
        [
            twice.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
            .dt.convert_time_zone("UTC")
            .alias(t + "twice")
        ],
        [pl.coalesce(pl.col(t + "unique").dt.convert_time_zone("UTC"), pl.col(t + "twice")).alias(t + "local")],
        [
            pl.when(bad | badoff)
            .then(None)
            .when(offset.is_not_null())
            .then(pl.col(t + "from_offset"))
            .otherwise(pl.col(t + "local"))
            .alias(col),
            pl.col(t + "date").alias(f"{col}_is_date"),
            pl.when(badoff)
            .then(pl.lit(BAD_OFFSET))
            .when(bad)
            .then(pl.lit(unparseable_message(fmts)))
            .when(offset.is_null() & wall.is_not_null() & pl.col(t + "local").is_null())
            .then(pl.lit(DST_GAP))
            .alias(ERR + col),
            # the same wall-clock time one hour later: the autumn hour that happens twice
            # (a wall time with one instant is never repeated: false without the lookup)
            (
                offset.is_null()
                & pl.col(t + "twice").is_not_null()
                & ((pl.col(t + "twice") + pl.duration(hours=1)).dt.convert_time_zone(tz).dt.replace_time_zone(None) == wall)
            ).alias(f"_ambiguous_{col}"),
        ],
    ]
    for step in steps:
        lf = lf.with_columns(step)
    return lf.drop(pl.selectors.starts_with(t))


def date_expr(
    col: str, dtype: pl.DataType, fmts: tuple[str, ...] = (), trimmed: pl.Expr | None = None
) -> tuple[pl.Expr, pl.Expr]:
    """(the column as a Date, its problem reason or null): configured formats, then YYYY-MM-DD.
    trimmed: the column's `text` when the caller already holds it as a column."""
    if isinstance(dtype, pl.Date):
        return pl.col(col), pl.lit(None, pl.String)
    value = text(col) if trimmed is None else trimmed
    iso = value.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    tried = []
    for fmt in fmts:
        if formats_mod.is_date_only(fmt):
            tried.append(value.str.to_date(fmt, strict=False))
        else:
            tried.append(value.str.to_datetime(fmt, strict=False, time_unit="us", cache=False).dt.date())
    parsed = pl.coalesce([*tried, iso]) if tried else iso
    expected = " or ".join(fmts) + " (date_formats), or YYYY-MM-DD" if fmts else "YYYY-MM-DD"
    problem = pl.when(value.is_not_null() & parsed.is_null()).then(pl.lit(f"{UNPARSEABLE_DATE_PREFIX}: expected {expected}"))
    return parsed, problem
