"""The input data contract (DOMAIN.md section 5, and the additions of issue 13): tables, columns, kinds,
required values.

Which tables a run needs is the audits' business (each manifest's ``[inputs]``); here every table is
described, whether or not an audit reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

# The longest text a contract column may hold, in characters. Names, codes, ids and words are short; a value
# far longer is no name (a field that swallowed a file, a hostile export) and no human reads it on a page or in a
# workbook cell (Excel stops at 32,767). Held as data, one 50 MB department grew the report stage to 5.5 GB of
# memory and overflowed an Arrow string buffer. So such a row is bad input: set aside in rejects.csv with its
# column and this reason (the value not shown), and the value goes no further than the parse.
LONGEST_TEXT = 1_000
# free text a clinician writes: several paragraphs are real, a workbook cell still shows them
LONGEST_FREE_TEXT = {"indication_text": 10_000}


def longest_text(column: str) -> int:
    """The most characters a value of the contract column may have (``LONGEST_TEXT``)."""
    return LONGEST_FREE_TEXT.get(column, LONGEST_TEXT)


# the reject's reason for a CSV's last row cut off mid-row; the gate's `<table>.file.whole` checks find it by these
# words (pipeline/quality/sql_checks.py), since such a row says the file itself was cut short
CUT_OFF_REASON = "row cut off mid-row (file ends without a newline and the row has too few fields); re-export the extract"


def too_long_reason(column: str) -> str:
    """The reject's reason for a value of `column` longer than it may be: what it is and what to do."""
    return (
        f"longer than {longest_text(column):,} characters, which no {column} is (a damaged or hostile extract): "
        "the row is set aside and the value not shown; fix the value in the extract"
    )


# The years an instant (performed_at, ordered_at, recorded_at) may fall in. An order of year 1 or 9999 is no
# order: a placeholder or a damaged field. Year 9999 local is year 10000 in UTC, which no Python datetime holds:
# the run stopped with a traceback after the warehouse had loaded it; year 1 made the data span 2,000 years of
# months. Such a row is set aside with the value and this reason (load.set_aside_impossible). Future dates
# inside the window stay: the gate's not_future checks count them.
INSTANT_YEARS = (1900, 2199)


def out_of_range_reason() -> str:
    first, last = INSTANT_YEARS
    return f"outside the years {first} to {last}, which no order, procedure or diagnosis time is: fix the value in the extract"


# what separates the codes of a code list as delivered, with the spaces or tabs around it: read as the contract's
# '|'. The tab is the character itself: Polars' and Spark's regular expressions (and Spark's SQL text) read it
# alike, where an escape or a class such as \\s differs between them. A run of them ('G97.1,,M54.5', an empty
# field between two) is one separator: read as '||', the list failed the gate's format check for an empty code.
# The full-width comma and semicolon (U+FF0C, U+FF1B) are an East Asian keyboard's, a line break a workbook cell's
# list (Alt+Enter: 'G97.1\nM54.5' read as one malformed code); no ICD-10-CM code holds one.
CODE_LIST_SEPARATORS = "[ \t\r\n]*[|,;\uff0c\uff1b\r\n][ \t\r\n|,;\uff0c\uff1b]*"


@dataclass(frozen=True)
class TableContract:
    name: str
    required_columns: tuple[str, ...]
    optional_columns: tuple[str, ...]
    not_null: tuple[str, ...]  # a row without one of these is rejected
    id_column: str | None  # unique; later duplicates are rejected
    instants: tuple[str, ...] = ()  # ISO 8601, with or without offset
    dates: tuple[str, ...] = ()
    integers: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    booleans: tuple[str, ...] = ()  # true/false (also yes/no, y/n, 1/0, t/f), any case
    lowercase: tuple[str, ...] = ()  # controlled vocabularies, compared lower-case
    codes: tuple[str, ...] = ()  # trimmed, upper-cased text
    # lists of codes, '|'-separated in the contract; a comma or a semicolon (an EHR's usual list, 'G97.1, M54.50')
    # reads as '|': no ICD-10-CM code holds one, and the audits split on '|' alone (CODE_LIST_SEPARATORS)
    code_lists: tuple[str, ...] = ()
    # (column, lowest, highest): a number outside is no real value of it (age 999, -5, NaN): nulled
    ranges: tuple[tuple[str, float, float], ...] = ()
    # coded columns the contract constrains: column -> the values it allows (a site's own words
    # map onto them through [values.<table>.<column>], pipeline/ingest/value_maps.py)
    vocabularies: tuple[tuple[str, tuple[str, ...]], ...] = ()
    may_be_empty: bool = False  # a header without rows is a file, not a broken extract
    # date columns that may hold a partial date (YYYY or YYYY-MM: FHIR allows a partial birthDate, and a
    # de-identified export often keeps the year alone) -> (the column of its earliest possible day, of its latest).
    # The date column itself stays a whole date or NULL, so nothing that reads it takes 1980 for 1980-01-01; the
    # two derived columns (typed_frame fills them for a partial date only) let an age be known as a range
    partial_dates: tuple[tuple[str, tuple[str, str]], ...] = ()

    @property
    def derived_columns(self) -> tuple[str, ...]:
        """Columns the loader derives, never delivered: the warehouse's views hold them (NULL when a file lacks them)."""
        return tuple(c for _, pair in self.partial_dates for c in pair)

    @property
    def allowed_values(self) -> dict[str, tuple[str, ...]]:
        return dict(self.vocabularies)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required_columns + self.optional_columns


PROCEDURES = TableContract(
    name="procedures",
    required_columns=("procedure_id", "patient_id", "performed_at", "procedure_code", "department"),
    optional_columns=(
        "procedure_name",
        "site",
        "provider_id",
        "patient_birth_date",
        "patient_age",
        "needle_gauge",
        "needle_type",
        "attempts",
        "patient_position",
    ),
    not_null=("procedure_id", "patient_id", "performed_at", "procedure_code"),
    id_column="procedure_id",
    instants=("performed_at",),
    dates=("patient_birth_date",),
    partial_dates=(("patient_birth_date", ("patient_birth_earliest", "patient_birth_latest")),),
    integers=("needle_gauge", "attempts"),
    numbers=("patient_age",),
    ranges=(("patient_age", 0, 130),),
    lowercase=("needle_type", "patient_position"),
    codes=("procedure_code",),
    vocabularies=(("needle_type", ("cutting", "pencil_point")), ("patient_position", ("sitting", "lateral", "prone"))),
)

IMAGING_ORDERS = TableContract(
    name="imaging_orders",
    required_columns=("order_id", "patient_id", "ordered_at", "order_code", "ordering_department"),
    optional_columns=("order_name", "ordering_provider_id", "indication_codes", "indication_text", "status", "priority", "site"),
    # ordered_at may be empty: such an order is audited as not_evaluable / missing_time
    not_null=("order_id", "patient_id", "order_code"),
    id_column="order_id",
    instants=("ordered_at",),
    lowercase=("status", "priority"),
    codes=("order_code",),
    code_lists=("indication_codes",),
    vocabularies=(("status", ("ordered", "scheduled", "completed", "cancelled")),),
)

DIAGNOSES = TableContract(
    name="diagnoses",
    required_columns=("patient_id", "diagnosis_code", "recorded_at"),
    # the encounter of the diagnosis (DOMAIN-LOW-BACK-PAIN.md section 2): its setting, and whether
    # it was the principal diagnosis (is_principal, or diagnosis_rank 1)
    optional_columns=("setting", "is_principal", "diagnosis_rank"),
    not_null=("patient_id", "diagnosis_code", "recorded_at"),
    id_column=None,
    instants=("recorded_at",),
    integers=("diagnosis_rank",),
    booleans=("is_principal",),
    ranges=(("diagnosis_rank", 1, 999),),
    codes=("diagnosis_code",),
    vocabularies=(("setting", ("outpatient", "emergency", "observation", "telehealth", "inpatient")),),
    may_be_empty=True,
)

PATIENTS = TableContract(
    name="patients",
    required_columns=("patient_id", "birth_date"),
    optional_columns=("sex",),
    not_null=("patient_id",),  # an empty birth date: the age comes from the procedures, or is unknown
    id_column="patient_id",
    dates=("birth_date",),
    partial_dates=(("birth_date", ("birth_earliest", "birth_latest")),),
    lowercase=("sex",),
    may_be_empty=True,
)

CONTRACTS = (PROCEDURES, IMAGING_ORDERS, DIAGNOSES, PATIENTS)


def shown_patient_id(value_sql: str) -> str:
    """A DuckDB expression: the patient id a value would show, to compare with the delivery's patient ids before the
    value is published (rejects.csv, the log, the report's words no map knows): the value trimmed, without a FHIR
    reference's ``Patient/`` (a base URL before it too). A ServiceRequest whose authoredOn held its subject's
    reference showed ``Patient/P0000044`` in rejects.csv, compared whole with the id ``P0000044``."""
    return f"regexp_replace(trim({value_sql}), '^(.*/)?Patient/', '')"


# from a value's first digit: P0104501 and MRNP0104501 give 0104501
_FROM_FIRST_DIGIT = "regexp_extract({}, '^[^0-9]*(.*)$', 1)"


def values_showing_a_patient_id(values_sql: str, patient_ids_sql: str) -> str:
    """A DuckDB query: those of the values ``values_sql`` selects (a query of one column: values about to be published,
    a reject's, a word no map knows) that show one of the patient ids ``patient_ids_sql`` selects (a query of one
    column), in any letter case, as one of the value's words (the value whole without a FHIR reference's ``Patient/``:
    ``shown_patient_id``; its runs of letters, digits and ``-_.``; its runs of letters and digits; its runs of digits;
    all its letters and digits together), or one of those from its first digit, with or without its leading zeros.
    An id is found whole (``MRN:P0000937``, ``Patient/P0000937/_history/2``, ``"p0000937"``, after a zero-width space,
    before a date); its letters and digits together from 5 of them (``P0000937.``, ``P0000937-01``, ``_P0000937_``);
    from its first digit, with or without its zeros, from 6 (``MRNP0000937``, ``P0000937x``, ``104501`` for
    ``0104501``), as ``held_patient_ids.holds_patient_id`` counts them in a published column. The hostile reviews found each
    of these in rejects.csv (2026-12-04, 2026-12-05).

    Only the ids whose last 5 characters end one of the values' words are worked out (each once, then an equality
    join): an id whose last 5 characters hold a separator (``104-50-1234``) is found whole, not as ``104501234``. Asked
    per value, the join of words and ids on those 5 characters took over 300 s for 200 values when 1M ids shared them
    (``0000123-MAINH``)."""
    low = "lower(v)"
    words = (
        f"list_concat(string_split_regex({low}, '[^\\pL\\pN_.-]+'), string_split_regex({low}, '[^\\pL\\pN]+'), "
        f"regexp_extract_all({low}, '[0-9]+'), [regexp_replace({low}, '[^\\pL\\pN]+', '', 'g'), "
        f"lower({shown_patient_id('v')})])"
    )
    from_digit = _FROM_FIRST_DIGIT.format("w")
    joined = "regexp_replace(id, '[^\\pL\\pN]+', '', 'g')"
    return f"""WITH shown_values AS (SELECT DISTINCT v FROM ({values_sql}) AS shown_values(v) WHERE v IS NOT NULL),
    shown_words AS (
        SELECT v, unnest(list_transform({words}, lambda w: [w, {from_digit}, ltrim({from_digit}, '0')]), recursive := true)
            AS word
        FROM shown_values),
    candidate_ids AS (
        SELECT DISTINCT lower(trim(id)) AS id FROM ({patient_ids_sql}) AS patient_ids(id)
        WHERE right(lower(trim(id)), 5) IN (SELECT right(word, 5) FROM shown_words)),
    joined_ids AS (SELECT id, {joined} AS joined FROM candidate_ids),
    id_forms AS (SELECT id, joined, {_FROM_FIRST_DIGIT.format("joined")} AS unprefixed FROM joined_ids),
    id_keys AS (
        SELECT unnest([id, CASE WHEN length(joined) >= 5 THEN joined END, CASE WHEN length(unprefixed) >= 6 THEN unprefixed END,
            CASE WHEN length(ltrim(unprefixed, '0')) >= 6 THEN ltrim(unprefixed, '0') END]) AS k
        FROM id_forms)
    SELECT DISTINCT v FROM shown_words WHERE word IN (SELECT k FROM id_keys WHERE k IS NOT NULL)"""


CONTRACT_BY_NAME = {c.name: c for c in CONTRACTS}
