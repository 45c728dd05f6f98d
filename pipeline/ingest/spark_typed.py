"""One table's rows typed as the contract says, on Spark: the Spark SQL twin of ``typed_frame``.

The same columns come out as from the Polars parse (typed data columns, ``<instant>_is_date``,
``_ambiguous_<instant>``, one ``_err_<column>`` reason per check, ``_raw_<column>`` for the delivered
text of a failed value), with the same reasons, so the loader lists rejects from either the same way.
The column types come from the contract (``source_store.sql_type``: one source of truth). Every
expression is Spark SQL text built here; the session time zone is UTC (``pipeline.models.spark``).
"""

from __future__ import annotations

import re

from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.ingest import formats as formats_mod
from pipeline.ingest import timestamps, value_maps
from pipeline.ingest.contract import CODE_LIST_SEPARATORS, TableContract, longest_text
from pipeline.ingest.source_store import ERR, LINE, LONG_TEXT, sql_type
from pipeline.ingest.typed_frame import BOOLEAN_WORDS

# the contract's SQL types (DuckDB spelling) as Spark types
SPARK_TYPES = {
    "TIMESTAMPTZ": "TIMESTAMP",
    "DATE": "DATE",
    "BIGINT": "BIGINT",
    "DOUBLE": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
    "VARCHAR": "STRING",
}
# what Polars' strict=False casts accept (Spark's casts also take '3.0' as an integer, and trim)
WHOLE = r"^[+-]?[0-9]+$"
NUMBER = r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$|^(?i)[+-]?(inf|infinity|nan)$"
# strftime directives (Polars, chrono) -> Spark datetime pattern letters; anything else is refused
_STRFTIME = {
    "%Y": "yyyy",
    "%y": "yy",
    "%m": "M",
    "%d": "d",
    "%e": "d",
    "%H": "H",
    "%I": "h",
    "%M": "m",
    "%S": "s",
    "%p": "a",
    "%b": "MMM",
    "%B": "MMMM",
    "%z": "xx",
    "%:z": "xxx",
    "%T": "H:m:s",
    "%R": "H:m",
    "%F": "yyyy-M-d",
    "%%": "%",
}


def spark_type(contract: TableContract, col: str) -> str:
    """A contract column's Spark type: the type the warehouse gives it, in Spark's spelling."""
    return SPARK_TYPES[sql_type(contract, col)]


def q(name: str) -> str:
    """A column name as a Spark SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def lit(text: str) -> str:
    """A Spark SQL string literal (backslashes are escapes in Spark's string literals)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def spark_pattern(fmt: str, table: str) -> str:
    """A strftime format of the config as a Spark datetime pattern; a directive without one stops the run."""
    out, i = [], 0
    literal_run = ""
    while i < len(fmt):
        token = fmt[i : i + 3] if fmt.startswith("%:z", i) else fmt[i : i + 2]
        if fmt[i] == "%":
            if token not in _STRFTIME:
                raise ConfigError(
                    f"[formats.{table}] format {fmt!r}: {token} has no Spark reading here "
                    f"(it reads {', '.join(_STRFTIME)}); use --engine duckdb for this extract"
                )
            if literal_run:
                out.append("'" + literal_run.replace("'", "''") + "'")
                literal_run = ""
            out.append(_STRFTIME[token])
            i += len(token)
        else:
            literal_run += fmt[i]
            i += 1
    if literal_run:
        out.append("'" + literal_run.replace("'", "''") + "'")
    return "".join(out)


def _stripped(expr: str) -> str:
    """The text with Unicode white space stripped at both ends, as Polars' ``strip_chars`` does."""
    return f"regexp_replace(CAST({expr} AS STRING), '^(?U)\\\\s+|(?U)\\\\s+$', '')"


def _text(col: str) -> str:
    """Trimmed text; blank is missing (``timestamps.text``)."""
    return f"nullif({_stripped(q(col))}, '')"


def _instant(col: str, kind: str, tz: str, fmts: tuple[str, ...], table: str) -> list[list[str]]:
    """Steps (each a list of `expr AS name`) turning one timestamp column into its UTC instant, as
    ``timestamps.with_instant`` does: ISO forms padded to one explicit format, then the site zone
    (DST gap: null and a reason; the autumn hour twice: the earlier instant, flagged)."""
    t = f"_t_{col}_"
    c = q(col)
    z = lit(tz)
    if kind == "instant":  # a Parquet instant: already UTC
        return [
            [
                f"{c} AS {c}",
                f"false AS {q(col + '_is_date')}",
                f"false AS {q('_ambiguous_' + col)}",
                f"CAST(NULL AS STRING) AS {q(ERR + col)}",
            ]
        ]
    if kind in ("date", "wall"):
        steps = [
            [
                f"CAST({c} AS TIMESTAMP) AS {t}wall",
                f"CAST(NULL AS BIGINT) AS {t}offset",
                f"{'true' if kind == 'date' else 'false'} AS {t}date",
                f"false AS {t}bad",
                f"false AS {t}badoff",
            ]
        ]
    else:
        raw = _stripped(c)
        steps = [
            [f"regexp_replace({raw}, '^([^T]*)T', '$1 ') AS {t}norm"],
            [
                f"CASE WHEN octet_length({t}norm) = 10 THEN {t}norm || ' 00:00:00' "
                f"WHEN octet_length({t}norm) = 16 THEN {t}norm || ':00' "
                # hours and minutes with an offset, no seconds (timestamps.NO_SECONDS_LENGTHS)
                f"WHEN octet_length({t}norm) IN ({', '.join(map(str, timestamps.NO_SECONDS_LENGTHS))}) "
                f"AND substr({t}norm, 17, 1) IN ({', '.join(map(lit, timestamps.OFFSET_STARTS))}) "
                f"THEN substr({t}norm, 1, 16) || ':00' || substr({t}norm, 17) ELSE {t}norm END AS {t}padded",
                f"octet_length({t}norm) = 10 AS {t}isdate",
            ],
            [
                f"substr({t}padded, 20) AS {t}suffix",
                f"try_to_timestamp(substr({t}padded, 1, 19), 'yyyy-M-d H:m:s') AS {t}wall0",
            ],
            [
                f"nullif(regexp_extract({t}suffix, '([Zz]|[+-][0-9]{{2}}:?[0-9]{{2}})$', 1), '') AS {t}off",
                # the fraction's first six digits, as microseconds
                f"coalesce(CAST(rpad(substr(nullif(regexp_extract({t}suffix, '^[.]([0-9]{{1,9}})', 1), ''), 1, 6), 6, '0') "
                f"AS BIGINT), 0) AS {t}micros",
                f"coalesce({t}norm <> '', false) AS {t}present",
            ],
            [
                f"try_cast(substr({t}off, 2, 2) AS BIGINT) AS {t}offh",
                f"try_cast(substr({t}off, -2, 2) AS BIGINT) AS {t}offm",
            ],
            [
                f"timestampadd(MICROSECOND, {t}micros, {t}wall0) AS {t}wall",
                f"CASE WHEN upper({t}off) = 'Z' THEN 0 ELSE "
                f"(CASE WHEN startswith({t}off, '-') THEN -1 ELSE 1 END) * ({t}offh * 60 + {t}offm) END AS {t}offset",
                f"{t}isdate AS {t}date",
                f"{t}present AND ({t}wall0 IS NULL OR NOT coalesce({t}suffix RLIKE {lit(timestamps.SUFFIX)}, false)) AS {t}bad",
                f"coalesce({t}offm > 59 OR {t}offh * 60 + {t}offm > {timestamps.MAX_OFFSET_MINUTES}, false) AS {t}badoff",
            ],
        ]
        if fmts:
            steps += _format_steps(c, t, fmts, table)
    wall, offset = f"{t}wall", f"{t}offset"
    steps += [
        [
            f"to_utc_timestamp({wall}, {z}) AS {t}local",
            f"timestampadd(MINUTE, -{offset}, {wall}) AS {t}from_offset",
        ],
        [
            # Spark moves a time in the spring gap forward; back in the zone it is not the wall clock
            f"from_utc_timestamp({t}local, {z}) <> {wall} AS {t}gap",
            f"from_utc_timestamp({t}local + INTERVAL 1 HOUR, {z}) = {wall} AS {t}twice",
        ],
        [
            f"CASE WHEN {t}bad OR {t}badoff THEN NULL WHEN {offset} IS NOT NULL THEN {t}from_offset "
            f"WHEN {t}gap THEN NULL ELSE {t}local END AS {c}",
            f"{t}date AS {q(col + '_is_date')}",
            f"CASE WHEN {t}badoff THEN {lit(timestamps.BAD_OFFSET)} WHEN {t}bad THEN {lit(timestamps.unparseable_message(fmts))} "
            f"WHEN {offset} IS NULL AND {wall} IS NOT NULL AND {t}gap THEN {lit(timestamps.DST_GAP)} END AS {q(ERR + col)}",
            f"coalesce({offset} IS NULL AND NOT {t}gap AND {t}twice, false) AS {q('_ambiguous_' + col)}",
        ],
    ]
    return steps


def _format_steps(c: str, t: str, fmts: tuple[str, ...], table: str) -> list[list[str]]:
    """The configured formats, tried in order before the ISO reading (which stays the fallback)."""
    raw = _stripped(c)
    parsed = []
    for i, fmt in enumerate(fmts):
        # an offset in the format: Spark gives the UTC instant, the wall clock at offset 0
        parsed.append(f"try_to_timestamp({raw}, {lit(spark_pattern(fmt, table))}) AS {t}f{i}")
    cols = [f"{t}f{i}" for i in range(len(fmts))]
    matched = " OR ".join(f"{x} IS NOT NULL" for x in cols)
    offset = " ".join(
        f"WHEN {x} IS NOT NULL THEN {0 if formats_mod.has_offset(f) else 'CAST(NULL AS BIGINT)'}"
        for x, f in zip(cols, fmts, strict=True)
    )
    date = " ".join(
        f"WHEN {x} IS NOT NULL THEN {str(formats_mod.is_date_only(f)).lower()}" for x, f in zip(cols, fmts, strict=True)
    )
    return [
        parsed,
        [
            f"coalesce({', '.join(cols)}, CASE WHEN NOT {t}bad THEN {t}wall END) AS {t}wall2",
            f"CASE {offset} ELSE {t}offset END AS {t}offset2",
            f"CASE {date} ELSE {t}date END AS {t}date2",
            f"NOT ({matched}) AND {t}bad AS {t}bad2",
            f"NOT ({matched}) AND {t}badoff AS {t}badoff2",
        ],
        [f"{t}{n}2 AS {t}{n}" for n in ("wall", "offset", "date", "bad", "badoff")],
    ]


def _date(col: str, kind: str, fmts: tuple[str, ...], table: str) -> tuple[str, str]:
    """(the column as a DATE, its problem reason or NULL): configured formats, then YYYY-MM-DD."""
    if kind in ("date", "wall", "instant"):
        return f"CAST({q(col)} AS DATE)", "CAST(NULL AS STRING)"
    value = _text(col)
    tried = [f"CAST(try_to_timestamp({value}, {lit(spark_pattern(f, table))}) AS DATE)" for f in fmts]
    iso = f"try_to_date(substr({value}, 1, 10), 'yyyy-M-d')"
    parsed = f"coalesce({', '.join([*tried, iso])})"
    expected = " or ".join(fmts) + " (date_formats), or YYYY-MM-DD" if fmts else "YYYY-MM-DD"
    reason = lit(f"{timestamps.UNPARSEABLE_DATE_PREFIX}: expected {expected}")
    return parsed, f"CASE WHEN {value} IS NOT NULL AND {parsed} IS NULL THEN {reason} END"


def _partial_date(col: str, kind: str, parsed: str) -> tuple[str, tuple[str, str]]:
    """(whether the column is a partial date, YYYY or YYYY-MM, where no whole date was read; its earliest and latest
    possible days, NULL for any other value): ``typed_frame.partial_date``."""
    if kind in ("date", "wall", "instant"):
        return "false", ("CAST(NULL AS DATE)", "CAST(NULL AS DATE)")
    value = _text(col)
    partial = f"({parsed} IS NULL AND coalesce({value} RLIKE '^[0-9]{{4}}(-(0[1-9]|1[0-2]))?$', false))"
    year = f"CAST(substr({value}, 1, 4) AS INT)"
    first = f"make_date({year}, coalesce(CAST(nullif(substr({value}, 6, 2), '') AS INT), 1), 1)"
    last = f"CASE WHEN length({value}) = 4 THEN make_date({year}, 12, 31) ELSE last_day({first}) END"
    return partial, (f"CASE WHEN {partial} THEN {first} END", f"CASE WHEN {partial} THEN {last} END")


def _number(col: str, contract: TableContract) -> tuple[str, str]:
    """(a whole number or number column, its problem reason or NULL): a value outside the contract's
    range (NaN and infinity too) is no real value of the column and is nulled."""
    whole = col in contract.integers
    text = _text(col)
    parsed = (
        f"CASE WHEN {text} RLIKE {lit(WHOLE if whole else NUMBER)} THEN try_cast({text} AS {'BIGINT' if whole else 'DOUBLE'}) END"
    )
    low, high = next(((lo, hi) for x, lo, hi in contract.ranges if x == col), (None, None))
    outside = f"({parsed} IS NOT NULL AND NOT ({parsed} BETWEEN {low!r} AND {high!r}))" if low is not None else "false"
    range_reason = lit(f"outside the possible range {low:g} to {high:g}" if low is not None else "")
    not_a = lit("not a " + ("whole " if whole else "") + "number")
    problem = f"CASE WHEN {text} IS NOT NULL AND {parsed} IS NULL THEN {not_a} WHEN {outside} THEN {range_reason} END"
    return f"CASE WHEN {outside} THEN NULL ELSE {parsed} END", problem


def _as_text(col: str, kind: str) -> str:
    """A delivered value as the rejects list shows it (a Parquet wall clock as Polars writes it)."""
    if kind == "wall":
        return f"date_format({q(col)}, 'yyyy-MM-dd HH:mm:ss.SSSSSS')"
    return f"CAST({q(col)} AS STRING)"


def _in(expr: str, words) -> str:
    return f"{expr} IN ({', '.join(lit(w) for w in sorted(words))})"


def _mapped(col: str, contract: TableContract, cfg: Config) -> str:
    """A coded column read through its value map (``value_maps.mapped_expr``): a known word -> the
    contract's value; else as delivered (trimmed)."""
    readings = value_maps.effective_map(contract.name, col, cfg.values)
    text, low = _text(col), f"lower({_text(col)})"
    whens = [f"WHEN {_in(low, [w for w, (v, _) in readings.items() if w == v])} THEN {low}"]
    by_value: dict[str, list[str]] = {}
    for word, (value, _) in readings.items():
        if word != value:
            by_value.setdefault(value, []).append(word)
    whens += [f"WHEN {_in(low, words)} THEN {lit(value)}" for value, words in sorted(by_value.items())]
    return f"CASE {' '.join(whens)} ELSE {text} END"


def typed_columns(kinds: dict[str, str], contract: TableContract, cfg: Config) -> list[list[str]]:
    """The select steps typing a frame whose columns are ``kinds`` (column -> text | instant | wall |
    date | number ...: what the file holds), ending in the loader's typed columns."""
    fmt = cfg.format_of(contract.name)
    checked = [
        c for c in kinds if c in contract.instants + contract.dates + contract.integers + contract.numbers + contract.booleans
    ]
    keep = [q(c) for c in kinds] + [f"{_as_text(c, kinds[c])} AS {q('_src_' + c)}" for c in checked]
    steps: list[list[str]] = [keep]
    carried = [q(c) for c in kinds] + [q("_src_" + c) for c in checked]
    for col in contract.instants:
        if col in kinds:
            for step in _instant(col, kinds[col], cfg.site_timezone, fmt.timestamp_formats, contract.name):
                defined = [s.rsplit(" AS ", 1)[1] for s in step]  # a step may replace a column it read
                carried = [x for x in carried if x not in defined]
                steps.append(carried + step)
                carried += defined
    # rows with a text of more bytes than its column may hold characters: the loader's flag, as typed_frame sets it
    texts = [c for c, kind in kinds.items() if kind == "text" and c in contract.columns]
    long_text = " OR ".join(f"coalesce(octet_length({q(c)}) > {longest_text(c)}, false)" for c in texts) or "false"
    exprs, errs = [q(LINE)], [f"({long_text}) AS {q(LONG_TEXT)}"]
    for col, kind in kinds.items():
        if col == LINE:
            continue
        c = q(col)
        if col in contract.instants:
            exprs += [c, q(col + "_is_date"), q("_ambiguous_" + col)]
            errs.append(q(ERR + col))
        elif col in contract.dates:
            parsed, problem = _date(col, kind, fmt.date_formats, contract.name)
            exprs.append(f"{parsed} AS {c}")
            if col in dict(contract.partial_dates):
                partial, span = _partial_date(col, kind, parsed)
                exprs += [f"{day} AS {q(name)}" for day, name in zip(span, dict(contract.partial_dates)[col], strict=True)]
                problem = f"CASE WHEN NOT {partial} THEN {problem} END"  # a partial date is a value, no problem
            errs.append(f"{problem} AS {q(ERR + col)}")
        elif col in contract.integers or col in contract.numbers:
            value, problem = _number(col, contract)
            exprs.append(f"{value} AS {c}")
            errs.append(f"{problem} AS {q(ERR + col)}")
        elif col in contract.booleans:
            low = f"lower({_text(col)})"
            trues = [w for w, v in BOOLEAN_WORDS.items() if v]
            falses = [w for w, v in BOOLEAN_WORDS.items() if not v]
            parsed = f"CASE WHEN {_in(low, trues)} THEN true WHEN {_in(low, falses)} THEN false END"
            exprs.append(f"{parsed} AS {c}")
            errs.append(f"CASE WHEN {low} IS NOT NULL AND ({parsed}) IS NULL THEN 'not true or false' END AS {q(ERR + col)}")
        elif col in contract.allowed_values:
            exprs.append(f"{_mapped(col, contract, cfg)} AS {c}")
        elif col in contract.codes or col in contract.not_null or col in contract.lowercase:
            text = _text(col)
            text = f"upper({text})" if col in contract.codes else text
            text = f"lower({text})" if col in contract.lowercase else text
            exprs.append(f"{text} AS {c}")
        else:
            # free text: kept as delivered; blank is no value; a code list's separators read as '|' (typed_frame)
            text = f"CAST({c} AS STRING)"
            if col in contract.code_lists:
                text = f"trim(BOTH '|' FROM regexp_replace({text}, {lit(CODE_LIST_SEPARATORS)}, '|'))"
            exprs.append(f"CASE WHEN {_stripped(text)} = '' THEN NULL ELSE {text} END AS {c}")
    for col in contract.not_null:
        source = q("_src_" + col) if col in checked else f"CAST({q(col)} AS STRING)"
        if col in kinds:
            errs.append(
                f"CASE WHEN {source} IS NULL OR {_stripped(source)} = '' "
                f"THEN 'required value missing' END AS {q(ERR + col + '_missing')}"
            )
    steps.append(exprs + errs + [q("_src_" + c) for c in checked])
    raws = [f"CASE WHEN {q(ERR + c)} IS NOT NULL THEN {q('_src_' + c)} END AS {q('_raw_' + c)}" for c in checked]
    out = [re.split(r" AS (?=`[^`]*`$)", e)[-1] for e in exprs + errs]
    # the contract's columns in the contract's types, whatever the steps made of them
    typed = [f"CAST({c} AS {spark_type(contract, c.strip('`'))}) AS {c}" if c.strip("`") in contract.columns else c for c in out]
    steps.append(typed + raws)
    return steps
