"""Which code system a code's form says it belongs to (the forms the input suites check)."""

from __future__ import annotations

import polars as pl

# the same forms as expectations/*.json (orders.order_code.format, diagnoses.diagnosis_code.format)
FORMS = {
    "CPT": r"^[0-9]{4}[0-9A-Z]$",
    "LOINC": r"^[0-9]{1,7}-[0-9]$",
    "ICD-10-CM": r"^[A-TV-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$",
}
# a procedure's code: CPT, HCPCS Level II (a letter and four digits: G0260, which ICD-10-CM's form would
# take too) or ICD-10-PCS (seven characters, no I or O: 009U3ZX, an inpatient's procedure). Tried in order.
PROCEDURE_FORMS = {
    "CPT": FORMS["CPT"],
    "HCPCS": r"^[A-V][0-9]{4}$",
    "ICD-10-PCS": r"^[0-9A-HJ-NP-Z]{7}$",
}
OTHER = "other"


def system_expr(code: pl.Expr, forms: dict[str, str] = FORMS) -> pl.Expr:
    """The first system of `forms` whose form the trimmed upper-case code has, else other."""
    c = code.cast(pl.String).str.strip_chars().str.to_uppercase()
    expr = None
    for name, form in forms.items():
        cond = c.str.contains(form)
        expr = pl.when(cond).then(pl.lit(name)) if expr is None else expr.when(cond).then(pl.lit(name))
    return expr.otherwise(pl.lit(OTHER))


# CPT's Radiology section (codes 70010-79999): where an imaging order's CPT code is, but for a few (vascular
# ultrasound is in Medicine, 93xxx). A five-digit order code outside it is most often the site's own exam code.
RADIOLOGY_CPT = ("70010", "79999")
