"""One check's result, the same shape for a GX expectation and a SQL check."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SAMPLE_SIZE = 5  # keys (or values) of the violating rows a result names

# What a check's examples are (``CheckResult.sample_key``) when the report and the workbook may print them: names and
# months a committee reads anyway. A row's key or a column's value is never printed there (a value may be a patient
# id); the log and run.json name those for the data team.
DEPARTMENT_NAMES = "department names"
MONTHS = "month"
PRINTED_SAMPLES = frozenset({DEPARTMENT_NAMES, MONTHS})


def examples(values) -> list[str]:
    """The first violating rows' keys as a result names them: text, each once (a patient with several
    violating rows is one example, not the same id listed twice), at most ``SAMPLE_SIZE``."""
    return list(dict.fromkeys(str(v) for v in values))[:SAMPLE_SIZE]


@dataclass
class CheckResult:
    check_id: str
    table: str
    severity: str  # blocking | warning
    status: str  # passed | failed | error
    violated_count: int | None
    denominator: int | None
    percent: float | None
    description: str
    sample_keys: list[str] = field(default_factory=list)
    violations_sql: str | None = None  # lists the violating rows (or months, steps)
    row_level: bool = False
    engine: str = "gx"  # gx | sql
    expectation: dict | None = None  # the GX type + kwargs, for gx checks
    error: str | None = None
    set_aside_by_loader: bool = False  # the violating rows were set aside at parse time already
    seconds: float | None = None  # wall time of the table's batch (gx) or of the check (sql)
    # GX's own result (ExpectationValidationResult as a JSON dict), for Data Docs
    gx_result: dict | None = field(default=None, repr=False)
    sample_key: str | None = None  # what the sample keys are ("order_id", "source_line", "patient_id", ...)
    note: str | None = None  # what the check left out and why, in words (logged at info level: dq_note)
    note_warns: bool = False  # the note is logged as a warning: what it counted is published (a patient id in an id)
    suite: str | None = None  # the suite file the check is in
    # why the check itself could not run, when its own query or column is wrong (``own_error``): its author's to fix,
    # not the extract's
    check_error: str | None = None

    @property
    def blocking_failure(self) -> bool:
        return self.severity == "blocking" and self.status != "passed"


# The errors of a query that names what does not exist, or is no SQL: the query's, whatever the data. DuckDB's by
# kind; Spark's by its error class and SQLSTATE class 42 (syntax error or access rule: UNRESOLVED_COLUMN 42703,
# TABLE_OR_VIEW_NOT_FOUND 42P01, PARSE_SYNTAX_ERROR 42601, ...), the line Spark starts its AnalysisException with:
# without it such a check on Spark was the extract's failure, exit 3, where DuckDB's named the check, exit 1
_OWN_ERROR = re.compile(r"\b(?:Binder|Catalog|Parser) Error: [^\n]*|\[[A-Z][A-Z_.]*\] [^\n]*SQLSTATE: 42[0-9A-Z]{3}[^\n]*")


def own_error(error: str | None) -> str | None:
    """The database's first line when a check could not run because of its own query (a column or table that does not
    exist, a syntax error), found in the error Great Expectations or SQLAlchemy wraps it in; else None."""
    found = _OWN_ERROR.search(error or "")
    return found.group().strip().rstrip(";") if found else None


# What a check's result did to the run, as the report and the workbook say it: its key (the report's CSS class
# dq-<key>), its text in the checks table (beside the check's severity), and how a count of them reads (singular,
# plural). GX's status alone says "failed" for a warning whose rows stayed in and for a blocking check whose few rows
# were set aside while the run went on; a blocking check that stops the run leaves no report, so "failed" is for a
# report made some other way only.
OUTCOMES = {
    "passed": ("passed", ("passed", "passed")),
    "warning": ("rows kept", ("warning", "warnings")),
    "not_run": ("could not run", ("could not run", "could not run")),
    "set_aside": ("rows set aside", ("set its rows aside", "set their rows aside")),
    "failed": ("failed: run stopped", ("failed", "failed")),
}


def printed_examples(check: dict) -> list[str]:
    """The examples of one check as run.json holds it (``gate.as_dict``) that the pages may print (``PRINTED_SAMPLES``)."""
    if check.get("status") == "passed" or check.get("sample_key") not in PRINTED_SAMPLES:
        return []
    return [str(k) for k in check.get("sample_keys") or []]


def outcome(check: dict) -> str:
    """The key of ``OUTCOMES`` for one check as run.json holds it (``gate.as_dict``)."""
    if check.get("status") == "passed":
        return "passed"
    if check.get("severity") == "warning":
        return "not_run" if check.get("status") == "error" else "warning"
    if check.get("blocks") or check.get("status") == "error" or not check.get("rows_set_aside"):
        return "failed"
    return "set_aside"


def outcome_counts(checks: list[dict]) -> list[tuple[str, str]]:
    """Each outcome with its count in words ('45 passed', '1 warning', '3 warnings'), in ``OUTCOMES`` order."""
    counts: dict[str, int] = {}
    for c in checks:
        counts[outcome(c)] = counts.get(outcome(c), 0) + 1
    return [(key, f"{counts[key]:,} {OUTCOMES[key][1][0 if counts[key] == 1 else 1]}") for key in OUTCOMES if counts.get(key)]
