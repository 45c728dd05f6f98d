"""Cells a site's export writes differently from the contract, read when ``[formats.<table>]`` says how.

* ``code_with_description``: a code column whose cells hold the code and its description
  (``72148 - MRI LUMBAR SPINE WO CONTRAST``, ``72148 MRI L-SPINE``, ``CPT 72148``). The code is the cell's
  leading token (after a code system's name such as ``CPT``); the rest is the description, which fills the
  table's name column where the contract has one and the row leaves it empty. A leading token without a digit
  is no code (``MRI LUMBAR SPINE``: a description alone), and the row is set aside with that reason, unless the
  run's code map lists it (a site's own ``LOC-DSM``).
* ``decimal_comma``: number columns written as a European export writes them (``45,5``, ``1.234,5``).

Polars expressions only, so the parse stays one streaming query; inspect reads the cells with the same ones.
"""

from __future__ import annotations

from collections.abc import Collection

import polars as pl

# [a code system's name] the code [a dash or colon] [the description], in any case, on the trimmed cell
CODE_AND_TEXT = (
    r"(?i)^(?:(?:CPT|HCPCS|LOINC|ICD-?10(?:-?CM|-?PCS)?|LOCAL)(?:\s*[:#]\s*|\s+))?"  # CPT 72148, ICD-10-CM: M54.5
    r"([^\s:]+)"  # the code (a LOINC code holds a dash, no code a colon)
    r"(?:(?:\s*:\s*|\s+[-–]?\s*)(.*))?$"  # 72148: MRI, 72148 - MRI, 72148 MRI
)
# a code holds a digit (CPT 72148, HCPCS G0260, LOINC 24558-9, ICD-10-CM M54.5, a local IMG0042); a description's
# words (MRI, LUMBAR, CT) hold none
CODE_TOKEN = r"[0-9]"
# the contract's name column beside each code column (the diagnoses have none)
NAME_COLUMN = {"order_code": "order_name", "procedure_code": "procedure_name"}


def leading_code(cell: pl.Expr, known: Collection[str] = ()) -> pl.Expr:
    """The cell's code (its leading token), null when that token is no code (or the cell is empty): a token that
    holds a digit, or one of ``known`` (upper-case: the codes the run's code map lists, such as a site's LOC-DSM,
    which holds none), looked up for the whole column at once (is_in), no row at a time."""
    token = cell.str.extract(CODE_AND_TEXT, 1)
    is_code = token.str.contains(CODE_TOKEN)
    if known:
        is_code = is_code | token.str.to_uppercase().is_in(sorted(known))
    return pl.when(is_code).then(token).otherwise(None)


def description(cell: pl.Expr, known: Collection[str] = ()) -> pl.Expr:
    """What follows the cell's code (null when nothing does, or the leading token is no code; known: as leading_code)."""
    text = cell.str.extract(CODE_AND_TEXT, 2).str.strip_chars()
    return pl.when(leading_code(cell, known).is_not_null() & (text != "")).then(text).otherwise(None)


def not_a_code_reason(column: str) -> str:
    return (
        f"not a code: the cell's first word holds no digit and no code map lists it (code_with_description = true under "
        f"[formats] reads {column} as the code before its description, e.g. '72148 - MRI LUMBAR SPINE'); put the code "
        "in the cell, or a local code without a digit in local_code_map.csv"
    )


def looks_joined(cell: pl.Expr, known: Collection[str] = ()) -> pl.Expr:
    """A cell that holds more than a code: a code and a description, or a code system's name and the code."""
    return cell.str.contains(r"\s") & leading_code(cell, known).is_not_null()


# ----------------------------------------------------------------------------- decimal comma

# 45,5 | -3 | 1.234,5 (a point groups thousands, three digits at a time)
DECIMAL_COMMA_NUMBER = r"^[+-]?(?:[0-9]+|[0-9]{1,3}(?:\.[0-9]{3})+)(?:,[0-9]+)?$"
# what inspect counts: a value that only a decimal comma reads (45,5; 1.234,5), and one that only a point reads (45.5)
WITH_DECIMAL_COMMA = r"^\s*[+-]?(?:[0-9]+|[0-9]{1,3}(?:\.[0-9]{3})+),[0-9]+\s*$"
WITH_DECIMAL_POINT = r"^\s*[+-]?[0-9]*\.[0-9]+\s*$"


def comma_number_text(text: pl.Expr) -> pl.Expr:
    """A decimal-comma number's text as the number reader takes it (1.234,5 -> 1234.5), null when it is none."""
    plain = text.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
    return pl.when(text.str.contains(DECIMAL_COMMA_NUMBER)).then(plain).otherwise(None)


def not_a_comma_number_reason(whole: bool) -> str:
    kind = "whole number" if whole else "number"
    return (
        f"not a {kind} as decimal_comma = true under [formats] reads one (45,5 or 1.234,5: a comma before the decimals, "
        "points only between thousands); fix the value in the extract"
    )
