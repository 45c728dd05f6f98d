"""Expected failures and their exit codes; cli.py turns them into one line on stderr."""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 1  # usage or configuration error
EXIT_INPUT = 2  # an input file cannot be read as the data contract says
EXIT_QUALITY_GATE = 3  # a blocking data-quality check failed
EXIT_LOCKED = 4  # another run holds the warehouse


class AuditError(Exception):
    """An error the user can fix; carries its exit code and a one-line message."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ConfigError(AuditError):
    exit_code = EXIT_USAGE


class InputFileError(AuditError):
    """A file-level problem: the run stops before anything is replaced."""

    exit_code = EXIT_INPUT

    def __init__(self, path, problem: str, fix: str, line: int | None = None, column: str | None = None):
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {problem}. {fix}")
        self.path, self.line, self.column = str(path), line, column


class MissingColumnError(InputFileError):
    """A required column is missing: the data-quality gate's schema check, so exit code 3."""

    exit_code = EXIT_QUALITY_GATE


class QualityGateError(AuditError):
    exit_code = EXIT_QUALITY_GATE


class WarehouseLockedError(AuditError):
    exit_code = EXIT_LOCKED


class ReportError(AuditError):
    """The report cannot be produced as asked (e.g. PDF without a PDF engine)."""
