"""One check's result, the same shape for a GX expectation and a SQL check."""

from __future__ import annotations

from dataclasses import dataclass, field

SAMPLE_SIZE = 5  # keys (or values) of the violating rows a result names


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

    @property
    def blocking_failure(self) -> bool:
        return self.severity == "blocking" and self.status != "passed"
