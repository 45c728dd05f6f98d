"""Which code system a code's form says it belongs to (the forms the input suites check)."""

from __future__ import annotations

import polars as pl

# the same forms as expectations/*.json (orders.order_code.format, diagnoses.diagnosis_code.format)
FORMS = {
    "CPT": r"^[0-9]{4}[0-9A-Z]$",
    "LOINC": r"^[0-9]{1,7}-[0-9]$",
    "ICD-10-CM": r"^[A-TV-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$",
}
OTHER = "other"


def system_expr(code: pl.Expr) -> pl.Expr:
    """CPT, LOINC, ICD-10-CM or other, from the trimmed upper-case code."""
    c = code.cast(pl.String).str.strip_chars().str.to_uppercase()
    expr = None
    for name, form in FORMS.items():
        cond = c.str.contains(form)
        expr = pl.when(cond).then(pl.lit(name)) if expr is None else expr.when(cond).then(pl.lit(name))
    return expr.otherwise(pl.lit(OTHER))
