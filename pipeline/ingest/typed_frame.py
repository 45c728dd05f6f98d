"""One table's rows typed as the contract says, with one problem column per check (lazy, streamable).

Every expression here must run on Polars' streaming engine, or Polars falls back to holding
the whole extract in memory (tests/test_load.py checks the plan).
"""

from __future__ import annotations

from collections.abc import Collection

import polars as pl

from pipeline.config import Config
from pipeline.ingest import code_cells, timestamps, value_maps
from pipeline.ingest.contract import CODE_LIST_SEPARATORS, TableContract, longest_text
from pipeline.ingest.source_store import ERR, LINE, LONG_TEXT

BOOLEAN_WORDS = {
    "true": True,
    "false": False,
    "t": True,
    "f": False,
    "yes": True,
    "no": False,
    "y": True,
    "n": False,
    "1": True,
    "0": False,
}


def partial_date(text: pl.Expr, parsed: pl.Expr) -> tuple[pl.Expr, tuple[pl.Expr, pl.Expr]]:
    """(whether the trimmed text is a partial date, YYYY or YYYY-MM, where no whole date was read; its earliest and
    latest possible days, NULL for any other value): 1980 spans 1980-01-01..1980-12-31, 1980-02 1980-02-01..02-29."""
    partial = parsed.is_null() & text.str.contains(r"^[0-9]{4}(-(0[1-9]|1[0-2]))?$").fill_null(False)
    # (only a partial text reaches pl.date, which raises on a month 13: the other rows read NULL)
    year = pl.when(partial).then(text.str.slice(0, 4).cast(pl.Int32, strict=False))
    month = pl.when(partial).then(text.str.slice(5, 2).cast(pl.Int8, strict=False))
    first = pl.date(year, month.fill_null(1), 1)
    return partial, (first, pl.when(month.is_null()).then(pl.date(year, 12, 31)).otherwise(first.dt.month_end()))


def typed_frame(
    lf: pl.LazyFrame, schema: dict, contract: TableContract, cfg: Config, known_codes: Collection[str] = ()
) -> pl.LazyFrame:
    """All columns typed, plus one _err_<column> reason column per check and the ambiguity flags. known_codes: the
    codes the run's code map lists (upper-case), which code_with_description reads as codes without a digit."""
    fmt = cfg.format_of(contract.name)
    vocabularies = contract.allowed_values
    # rows with a text of more bytes than its column may hold characters (contract.LONGEST_TEXT), flagged for
    # the loader, which measures their characters and sets them aside (load.set_aside_impossible). One boolean:
    # a byte count is free; characters, or one reason column per text column, cost 10% of the parse
    texts = [c for c in schema if c in contract.columns and schema[c] == pl.String]
    # (never null: a missing value is no long text, and Spark's reading of an empty field agrees only so)
    long_text = (
        pl.any_horizontal(pl.col(c).str.len_bytes() > longest_text(c) for c in texts).fill_null(False) if texts else pl.lit(False)
    )
    lf = lf.with_columns(long_text.alias(LONG_TEXT))
    # the delivered text of checked columns, kept for the rejects list
    checked = [
        c for c in schema if c in contract.instants + contract.dates + contract.integers + contract.numbers + contract.booleans
    ]
    # a code read from a cell with its description: the cell is shown when it holds no code
    split_codes = [c for c in schema if c in contract.codes] if fmt.code_with_description else []
    checked += split_codes
    # the description of each split code, for the name column beside it (order_name, procedure_name)
    described = {code_cells.NAME_COLUMN[c]: c for c in split_codes if c in code_cells.NAME_COLUMN}
    # the trimmed text (`timestamps.text`) of every column a check or a reading uses, once, as its
    # own column: Polars does not share a repeated sub-expression inside one select (the not-null
    # check and the reading each trimmed the same text again: 3 trims of each id column, 10M orders)
    read_as_text = {*vocabularies, *contract.not_null, *contract.codes, *contract.lowercase, *contract.dates}
    read_as_text |= {*contract.integers, *contract.numbers, *contract.booleans}
    trimmed = [c for c in schema if c in read_as_text]
    # (`text` in two steps: as one expression Polars trims every value twice)
    lf = lf.with_columns(
        [pl.col(c).cast(pl.String).alias(f"_src_{c}") for c in checked]
        + [pl.col(c).cast(pl.String).str.strip_chars().alias(f"_txt_{c}") for c in trimmed]
    )
    lf = lf.with_columns(timestamps.blank_as_null(pl.col(f"_txt_{c}")).alias(f"_txt_{c}") for c in trimmed)
    for col in contract.instants:
        if col in schema:
            lf = timestamps.with_instant(lf, col, schema[col], cfg.site_timezone, fmt.timestamp_formats)
    # coded columns: their lower-case text once, as a column the value map reads
    coded = [c for c in schema if c in vocabularies]
    lf = lf.with_columns(
        value_maps.lower_expr(pl.col(f"_txt_{c}"), contract.name, c, cfg.values).alias(f"_low_{c}") for c in coded
    )
    exprs: list[pl.Expr] = [pl.col(LINE)]
    errs: list[pl.Expr] = [pl.col(LONG_TEXT)]
    for col, dtype in schema.items():
        if col == LINE:
            continue
        if col in contract.instants:
            exprs += [pl.col(col), pl.col(f"{col}_is_date"), pl.col(f"_ambiguous_{col}")]
            errs.append(pl.col(ERR + col))
        elif col in contract.dates:
            parsed, problem = timestamps.date_expr(col, dtype, fmt.date_formats, pl.col(f"_txt_{col}"))
            exprs.append(parsed.alias(col))
            if col in dict(contract.partial_dates):
                partial, span = partial_date(pl.col(f"_txt_{col}"), parsed)
                exprs += [day.alias(name) for day, name in zip(span, dict(contract.partial_dates)[col], strict=True)]
                problem = pl.when(~partial).then(problem)  # a partial date is a value, no problem
            errs.append(problem.alias(ERR + col))
        elif col in contract.integers or col in contract.numbers:
            target = pl.Int64 if col in contract.integers else pl.Float64
            text = pl.col(f"_txt_{col}")
            read = code_cells.comma_number_text(text) if fmt.decimal_comma else text
            parsed = read.cast(target, strict=False)
            low, high = next(((lo, hi) for c, lo, hi in contract.ranges if c == col), (None, None))
            outside = parsed.is_not_null() & ~parsed.is_between(low, high) if low is not None else pl.lit(False)
            exprs.append(pl.when(outside).then(None).otherwise(parsed).alias(col))
            whole = target == pl.Int64
            not_number = code_cells.not_a_comma_number_reason(whole) if fmt.decimal_comma else f"not a {'whole ' * whole}number"
            errs.append(
                pl.when(text.is_not_null() & parsed.is_null())
                .then(pl.lit(not_number))
                .when(outside)  # NaN and inf too: no real value of the column
                .then(pl.lit(f"outside the possible range {low:g} to {high:g}" if low is not None else ""))
                .alias(ERR + col)
            )
        elif col in contract.booleans:
            low = pl.col(f"_txt_{col}").str.to_lowercase()
            parsed = low.replace_strict(BOOLEAN_WORDS, default=None, return_dtype=pl.Boolean)
            exprs.append(parsed.alias(col))
            errs.append(pl.when(low.is_not_null() & parsed.is_null()).then(pl.lit("not true or false")).alias(ERR + col))
        elif col in vocabularies:
            # a site's word for a contract value is read as that value; an unknown one stays as delivered
            words = value_maps.mapped_expr(pl.col(f"_low_{col}"), pl.col(f"_txt_{col}"), contract.name, col, cfg.values)
            exprs.append(words.alias(col))
        elif col in split_codes:
            cell = pl.col(f"_txt_{col}").str.to_uppercase()
            code = code_cells.leading_code(cell, known_codes)
            exprs.append(code.alias(col))
            # (an empty cell has the reason below: required value missing)
            reason = pl.lit(code_cells.not_a_code_reason(col))
            errs.append(pl.when(cell.is_not_null() & code.is_null()).then(reason).alias(ERR + col))
        elif col in contract.codes or col in contract.not_null or col in contract.lowercase:
            text = pl.col(f"_txt_{col}")
            text = text.str.to_uppercase() if col in contract.codes else text
            text = text.str.to_lowercase() if col in contract.lowercase else text
            exprs.append(text.alias(col))
        else:
            # free text: kept as delivered, but a blank one (empty, quoted "", white space) is no value: a department
            # of "" was a group of its own beside `(not recorded)`, with an empty name on the pages
            text = pl.col(col).cast(pl.String)
            if col in contract.code_lists:  # 'G97.1, M54.50' as the contract's 'G97.1|M54.50'
                text = text.str.replace_all(CODE_LIST_SEPARATORS, "|").str.strip_chars("|")
            text = pl.when(text.str.contains(r"^\s*$")).then(None).otherwise(text)
            if col in described:  # an empty name: the description the code's cell holds
                text = pl.coalesce(text, code_cells.description(pl.col(f"_txt_{described.pop(col)}"), known_codes))
            exprs.append(text.alias(col))
    for name, code in described.items():  # a name column the extract lacks: the descriptions are its values
        exprs.append(code_cells.description(pl.col(f"_txt_{code}"), known_codes).alias(name))
    for col in contract.not_null:
        # an unparseable value has its own reason above; this one is for empty cells (null or blank:
        # the trimmed text is null)
        errs.append(pl.when(pl.col(f"_txt_{col}").is_null()).then(pl.lit("required value missing")).alias(f"{ERR}{col}_missing"))
    keep_src = [pl.col(f"_src_{c}") for c in checked]
    return (
        lf.select(exprs + errs + keep_src)
        .with_columns([pl.when(pl.col(ERR + c).is_not_null()).then(pl.col(f"_src_{c}")).alias(f"_raw_{c}") for c in checked])
        .drop([f"_src_{c}" for c in checked])
    )
