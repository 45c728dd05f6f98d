"""Logging to stderr: plain lines for people, one JSON object per line for schedulers."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextlib import contextmanager

log = logging.getLogger("pipeline")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "event": "log",  # a plain log line; structured events (stage_done, run_done, ...) override it
        }
        payload.update(getattr(record, "fields", {}))
        if record.exc_info and record.levelno >= logging.ERROR:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class _LibraryFormatter(logging.Formatter):
    """Another library's warning or error as one plain line: its logger's name, its message, and the
    exception's last line (its type and text) instead of a traceback."""

    def formatException(self, ei) -> str:  # noqa: N802 (logging's name)
        return f"({type(ei[1]).__name__}: {ei[1]})"

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.replace("\n", " ")


def _not_our_stop(record: logging.LogRecord) -> bool:
    """Drop a library's report of the stop this run asked for: py4j logs every SIGTERM or Ctrl-C that lands while
    it talks to Spark's JVM ("KeyboardInterrupt while sending command.", with a traceback), and the error its
    clean-up then meets ("Exception occurred while shutting down connection": a BrokenPipeError raised while
    handling the stop); the run's own last line says it was stopped."""
    from pipeline.errors import exceptions_behind, stop_requested

    if not (stop_requested() and record.exc_info and record.exc_info[1] is not None):
        return True
    # the stop (Ctrl-C, SIGTERM: a KeyboardInterrupt) itself, or an error raised while handling it
    return not any(isinstance(e, KeyboardInterrupt) for e in exceptions_behind(record.exc_info[1]))


def setup_logging(fmt: str = "text", verbosity: int = 0) -> None:
    """verbosity: -1 quiet (warnings and errors), 0 info, 1 debug."""
    level = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[max(-1, min(1, verbosity))]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("order-audit: %(message)s"))
    root = logging.getLogger("pipeline")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # other libraries' warnings and errors in the same format (JSON lines stay JSON): without a handler on the
    # root logger, the first logging.exception() of a library (py4j's) installs Python's default one, whose
    # "ERROR:root:..." lines and tracebacks a scheduler reading the log takes for a crash
    library = logging.StreamHandler(sys.stderr)
    library.setFormatter(JsonFormatter() if fmt == "json" else _LibraryFormatter("order-audit: %(name)s: %(message)s"))
    library.addFilter(_not_our_stop)
    # the handler's level too: a library that sets its own logger to INFO (Great Expectations' data context does)
    # printed "Created temporary directory ... for ephemeral docs site" on every `validate`, even with --quiet
    library.setLevel(logging.WARNING)
    logging.root.handlers[:] = [library]
    logging.root.setLevel(logging.WARNING)


def json_logging() -> bool:
    """Whether the log lines are JSON objects (--log-format json)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in log.handlers)


class Warned(logging.Handler):
    """The warning (and error) lines logged while it is attached (``warnings_logged``), in order, each with the audit
    and period its fields name: what a run's ``run.json`` lists (``about``)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[tuple[str, str | None, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", {})
        self.lines.append((record.getMessage(), fields.get("audit_id"), fields.get("period")))

    def about(self, audit_id: str | None = None, period: str | None = None) -> list[str]:
        """The messages of the lines about ``audit_id`` and ``period``, and of those about no audit or no period
        (the run's own: the pseudonym key, the data quality, the export); None: any."""
        return [
            message
            for message, audit, month in self.lines
            if (audit_id is None or audit in (None, audit_id)) and (period is None or month in (None, period))
        ]


@contextmanager
def warnings_logged():
    """The warning lines logged inside the block (``Warned``): a run's ``run.json`` ``warnings`` (it had listed the
    demo key's alone: not a data-quality warning, nor a period after the data, nor a changed pseudonym key, which the
    log had warned of)."""
    handler = Warned()
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


def event(message: str, level: int = logging.INFO, **fields) -> None:
    """A log line with structured fields (shown as JSON keys with --log-format json)."""
    log.log(level, message, extra={"fields": {"event": fields.pop("event", message), **fields}})


@contextmanager
def stage(name: str, timings: dict, period: str | None = None, audit: str | None = None):
    """Time a pipeline stage and log it as event=stage_done (``period``: the month of a per-month stage
    of a backfill; ``audit``: the audit of a per-audit stage when a run has several; so that no two
    lines of one run name the same stage)."""
    label = " ".join(p for p in (name, audit, period) if p)
    extra = {k: v for k, v in (("audit", audit), ("period", period)) if v}
    started = time.perf_counter()
    event(f"{label}: started", event="stage_start", stage=name, level=logging.DEBUG, **extra)
    yield
    seconds = time.perf_counter() - started
    timings[name] = timings.get(name, 0.0) + seconds
    event(f"{label}: done in {seconds:.2f} s", event="stage_done", stage=name, seconds=round(seconds, 3), **extra)
