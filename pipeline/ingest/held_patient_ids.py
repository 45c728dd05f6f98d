"""Whether a published value holds its row's own patient id, and the loader's withholding of such text.

The outputs name a patient only by a keyed pseudonym, yet publish an order's provider, department, site, name,
indication text and codes as they are: a patient id in one of them (an MRN typed into an indication, a column
mapping that took the patient id for the provider) would publish it. One home for the test
(``holds_patient_id``): the loader withholds the text values that hold it (``withheld_values_sql``, nulled at load
with a reject) and the gate's ``<table>.published_text.holds_no_patient_id`` checks count them
(pipeline/quality/sql_checks.py).
"""

from __future__ import annotations

# a patient id is looked for as a word of the id only from this many letters and digits (a three-digit patient id
# inside a sequence number is chance); from its first digit (without a prefix the id leaves out), from this many
# letters and digits (the test decks' pt-p7159-1 and or-p7159-1 share 7159-1, a case's tag, five of them)
ID_HOLDS_PATIENT_LEAST = 5
ID_HOLDS_PATIENT_UNPREFIXED = 6
# the published columns of a table other than its id (the gate looks at them together, the loader each apart): a
# provider, a department or a site column mapped from the patient id, or a patient id typed into an order's name or
# indication. The codes too: an order's code and indication codes are published as they are, a code no map knows
# included (not evaluable), and the patient id under order_code in 5% of the rows (a shifted column) was published with
# only the code checks' warnings (the hostile review, 2026-12-05). And a procedure's needle type and position: a word
# no map knows is published as it is in the case list and the report's breakdowns (the patient id under needle_type in
# 20% of the rows reached them, exit 0)
PUBLISHED_TEXT = {
    "imaging_orders": (
        "ordering_provider_id",
        "ordering_department",
        "site",
        "order_name",
        "order_code",
        "indication_codes",
        "indication_text",
    ),
    "procedures": (
        "provider_id",
        "department",
        "site",
        "procedure_name",
        "procedure_code",
        "needle_type",
        "patient_position",
    ),
}


def _words(text: str) -> str:
    """A DuckDB expression: ``text`` (a column) as its words between single spaces and at both ends, a word being a
    run of digits or a run of letters (``O-MRN000123/1`` gives `` O MRN 000123 1 ``): a patient id is held when its
    words are a run of the id's words, never a part of one (``1234`` is not in ``ACC123456``)."""
    digits_then_other = f"regexp_replace({text}, '([0-9])([^0-9])', '\\1 \\2', 'g')"
    other_then_digits = f"regexp_replace({digits_then_other}, '([^0-9])([0-9])', '\\1 \\2', 'g')"
    return f"(' ' || trim(regexp_replace({other_then_digits}, '[^\\pL\\pN]+', ' ', 'g')) || ' ')"


def _without_zeros(words: str) -> str:
    """``words`` (``_words``) with each number's leading zeros dropped (`` acc 00104501 3 `` gives `` acc 104501 3 ``)."""
    return f"regexp_replace({words}, ' 0+([0-9])', ' \\1', 'g')"


def _alnum_length(words: str) -> str:
    return f"length(replace({words}, ' ', ''))"


def holds_patient_id(value: str, patient: str = "patient_id") -> str:
    """A DuckDB expression: whether ``value`` holds the patient id ``patient`` (the row's own), compared in lower case,
    as a run of whole words (``_words``) in one of these forms:

    - the patient id's words, from 5 letters and digits (MRN104501 in mrn104501-01);
    - from its first digit, from 6 (P0104501's 0104501 in ACC-0104501-2);
    - either, every number without its leading zeros and the patient id's separators dropped, from 5 and 6 letters
      and digits left (104501 in ACC-00104501-3, 0104501 in ACC-104501-3, 104-50-1234 in O104501234).

    A part of a word never counts (104501 is not in 2104501, nor P0000265 in P000026501). The hostile review found
    the lower case, the zeros and the separators missed (2026-12-04)."""
    v, p = f"lower({value})", f"lower({patient})"
    unprefixed = f"regexp_extract({p}, '^[^0-9]*(.*)$', 1)"
    joined = f"regexp_replace({p}, '[^\\pL\\pN]+', '', 'g')"
    joined_unprefixed = f"regexp_extract({joined}, '^[^0-9]*(.*)$', 1)"
    as_given, no_zeros = _words(v), _without_zeros(_words(v))
    forms = (
        (as_given, _words(p), ID_HOLDS_PATIENT_LEAST),
        (as_given, _words(unprefixed), ID_HOLDS_PATIENT_UNPREFIXED),
        (no_zeros, _without_zeros(_words(joined)), ID_HOLDS_PATIENT_LEAST),
        (no_zeros, _without_zeros(_words(joined_unprefixed)), ID_HOLDS_PATIENT_UNPREFIXED),
    )
    return "(" + " OR ".join(f"({_alnum_length(w)} >= {least} AND contains({among}, {w}))" for among, w, least in forms) + ")"


def may_hold_patient_id(value: str, patient: str = "patient_id") -> str:
    """A cheap test that rules out nearly every row before ``holds_patient_id``'s regular expressions: whatever holds
    the patient id holds its last three characters (a number's last digits keep their place without its zeros), when
    they are of its last word: an id ending in a short word after a separator (``104501-A``) is looked for only where
    the value keeps that separator. Over 10M orders (2 cores, other work beside): the order ids 1.7 s, the five
    published text columns 4 s, half of it lower-casing them."""
    return f"(length({patient}) >= {ID_HOLDS_PATIENT_LEAST} AND contains(lower({value}), right(lower({patient}), 3)))"


# the published codes: they drive the verdicts (a code nulled would change an order's verdict), so the loader leaves
# them as they are; the gate stops the run when 0.1% of the rows hold the patient id in them and warns below
PUBLISHED_CODES = {"imaging_orders": ("order_code", "indication_codes"), "procedures": ("procedure_code",)}
# the published text the loader withholds: a value holding its row's patient id is nulled with a reject
WITHHELD_TEXT = {t: tuple(c for c in cols if c not in PUBLISHED_CODES[t]) for t, cols in PUBLISHED_TEXT.items()}
# the reject's reason for such a value (rejects.csv, action value_nulled, the value not shown); the gate's checks find
# the loader's by these words
WITHHELD_REASON = "holds the row's patient id: withheld from every output; correct it in the source system"


def withheld_values_sql(src: str, table: str, columns: list[str]) -> str | None:
    """A DuckDB query over ``src`` (a relation with source_line and patient_id): one row (source_line, column_name)
    per value of the table's ``WITHHELD_TEXT`` columns among ``columns`` that holds its row's patient id; None when
    the table has none of them. Each column apart (the column nulled is the one that holds it)."""
    cols = [c for c in WITHHELD_TEXT.get(table, ()) if c in columns]
    if not cols or "patient_id" not in columns:
        return None
    text = cols[0] if len(cols) == 1 else f"concat_ws(' ', {', '.join(cols)})"
    names = ", ".join(f"'{c}'" for c in cols)
    # the rows none of whose columns holds even the patient id's last three characters are left out first (one
    # lower-casing of the columns together), then each value of the few left is one row, judged by one expression:
    # one per column cost DuckDB 0.03 s each to plan, 0.15 s a table whatever its size. A CASE, not an AND, around
    # each test: DuckDB computed the words of every row's value ahead of the filter (``may_hold_patient_id``)
    return f"""SELECT source_line, column_name FROM (
        SELECT source_line, patient_id, unnest([{", ".join(cols)}]) AS value, unnest([{names}]) AS column_name
        FROM {src} WHERE patient_id IS NOT NULL AND CASE WHEN {may_hold_patient_id(text)} THEN true ELSE false END
    ) WHERE CASE WHEN {may_hold_patient_id("value")} THEN {holds_patient_id("value")} ELSE false END"""
