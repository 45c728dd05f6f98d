"""The one Jinja2 environment of the report pages, and how it prints values.

``autoescape=True`` and ``StrictUndefined``: every value is escaped and a missing variable is an
error; control characters (bidirectional, C0 and C1) are shown as visible codes (``controls``), never obeyed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
from pathlib import Path

import jinja2
import markupsafe

from pipeline.errors import ConfigError, first_line
from pipeline.period_status import final_mark, final_since, final_text
from pipeline.report import controls
from pipeline.resources import reports_dir
from pipeline.wording import counted


class _CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates kept for the life of the process (a run renders one environment per audit and per
    month, a backfill dozens, each would compile the same report shell again) and between runs in Jinja's
    own per-user cache folder (``FileSystemBytecodeCache``: ``_jinja2-cache-<uid>`` in the system's temporary
    folder, mode 0700, its owner checked), so the next run loads them instead of compiling them: 0.16 s of a
    small run. Jinja keys a template by its name and file and checks its source's checksum, so an edited
    template is compiled afresh; the file names carry the Jinja version and this module's settings
    (``_settings_fingerprint``), so a changed setting (escaping above all) never loads code compiled without it.
    The folder is a cache only: where it cannot be made, read or written, the
    templates are compiled as without it."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    @functools.cached_property
    def _folder(self) -> jinja2.FileSystemBytecodeCache | None:
        """Jinja's cache folder, made on first use; None where there is none to use."""
        try:
            return jinja2.FileSystemBytecodeCache(pattern=f"__order_audit_{_settings_fingerprint()}_%s.cache")
        except (OSError, RuntimeError):  # no usable temporary folder (Jinja refuses one it does not own)
            return None

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)
            return
        folder = self._folder
        if folder is None:
            return
        try:
            folder.load_bytecode(bucket)  # a stale or damaged file resets the bucket: compiled afresh
        except Exception:  # noqa: BLE001 - an unreadable cache file is compiled afresh, never a failed run
            bucket.reset()
        if bucket.code is not None:
            self._code[bucket.key] = bucket.bytecode_to_string()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()
        folder = self._folder
        if folder is not None:
            with contextlib.suppress(OSError):  # a full or read-only temporary folder: kept in memory only
                folder.dump_bytecode(bucket)


def _settings_fingerprint() -> str:
    """What the compiled code depends on besides a template's own text, which Jinja checks: the Jinja
    version and the environment's settings (escaping, ``finalize``, whitespace), which this module makes.
    A file name carries it, so code compiled under other settings is never loaded."""
    source = Path(__file__).read_bytes()
    return hashlib.sha256(jinja2.__version__.encode() + b"\0" + source).hexdigest()[:16]


_COMPILED = _CompiledTemplates()


# what an audit's own template can raise as it renders: Jinja's errors (a name the context lacks, a syntax error) and
# Python's in the expressions it runs (a filter given text where it takes a number)
_TEMPLATE_ERRORS = (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError, IndexError)


@contextlib.contextmanager
def audit_templates_named(audit_report_dir: Path | None):
    """An error raised while an audit's own template (``report/<name>.html``) renders is its author's to fix: one line
    naming the file and line (exit 1), where it was exit 70, "a bug in order-audit", naming no file (the audit
    author's review). The error is the template's when its frames are in the traceback (Jinja gives each template's
    code its file name and line), or a syntax error names the file; an error in the engine's templates alone is
    raised as it is."""
    try:
        yield
    except _TEMPLATE_ERRORS as exc:
        where = _audit_template_line(exc, audit_report_dir)
        if where is None:
            raise
        raise _template_error(where, "rendered", exc) from None


def check_audit_templates(audit_report_dir: Path) -> None:
    """The audit's report templates (``report/*.html``) are Jinja the engine can read, asked with the folder's other
    files: a syntax error was found as the report rendered, after the inputs were loaded and the warehouse committed,
    and `order-audit audits` said the folder was ready (the audit author's review). A name its context lacks is
    still found as it renders (``audit_templates_named``)."""
    if not audit_report_dir.is_dir():
        return
    env = make_env(audit_report_dir)
    for path in sorted(audit_report_dir.glob("*.html")):
        try:
            env.parse(path.read_text(encoding="utf-8"), path.name, str(path))
        except jinja2.TemplateSyntaxError as exc:
            raise _template_error(f"{path}, line {exc.lineno}", "read", exc) from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: the audit's report template is not UTF-8 text; save it as UTF-8") from None


def _template_error(where: str, what: str, exc: BaseException) -> ConfigError:
    """The one line for an audit's template that cannot be ``what`` (read, rendered): its author's to fix."""
    return ConfigError(
        f"{where}: the audit's report template cannot be {what} ({type(exc).__name__}: {first_line(exc)}); fix the template"
    )


def _audit_template_line(exc: BaseException, audit_report_dir: Path | None) -> str | None:
    """'<file>, line <n>' of the innermost frame of ``exc`` in an audit template under ``audit_report_dir``."""
    if audit_report_dir is None:
        return None
    folder = Path(audit_report_dir).resolve()

    def inside(name: str | None) -> bool:
        return bool(name) and Path(name).resolve().is_relative_to(folder)

    if isinstance(exc, jinja2.TemplateSyntaxError) and inside(exc.filename):
        return f"{exc.filename}, line {exc.lineno}"
    found, tb = None, exc.__traceback__
    while tb is not None:
        if inside(tb.tb_frame.f_code.co_filename):
            found = f"{tb.tb_frame.f_code.co_filename}, line {tb.tb_lineno}"
        tb = tb.tb_next
    return found


def make_env(audit_report_dir: Path | None = None) -> jinja2.Environment:
    """The one Jinja2 environment: escape everything, fail on anything undefined. ``audit_report_dir``:
    the rendered audit's own section templates, named ``audit/<name>.html``."""
    loader: jinja2.BaseLoader = jinja2.FileSystemLoader(str(reports_dir()))
    if audit_report_dir is not None:
        loader = jinja2.ChoiceLoader([loader, jinja2.PrefixLoader({"audit": jinja2.FileSystemLoader(str(audit_report_dir))})])
    env = jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_shown,
        bytecode_cache=_COMPILED,
    )
    env.filters["pct"] = pct
    env.filters["num"] = num
    # a count before its noun, in the number the noun takes: {{ n|counted("order") }} is "1 order", "2,000 orders"
    env.filters["counted"] = counted
    env.filters["final_since"] = final_since
    env.filters["final_text"] = final_text
    env.filters["final_mark"] = _final_mark
    env.filters["utc"] = in_utc
    return env


def in_utc(instant: str) -> str:
    """A run's instant (ISO 8601 with its offset, run.json's ``started_at``) as the page prints it: said to be UTC,
    where every clinical time on the page is the site's ("2026-12-03T07:08:03+00:00" read as a site time)."""
    try:
        moment = dt.datetime.fromisoformat(str(instant))
    except ValueError:
        return str(instant)
    if moment.tzinfo is None:
        return str(instant)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _final_mark(final: dict) -> markupsafe.Markup:
    """The site index's "final since" cell (period_status.final_mark, its one home): every value shown and escaped
    as any printed value is, the day kept on one line (``<span class="date">``: "2026-" over "11-03" otherwise)."""
    shown = {k: markupsafe.escape(_shown(v)) if isinstance(v, str) else v for k, v in final.items()}
    return markupsafe.Markup(final_mark(shown, date=lambda d: f'<span class="date">{d}</span>'))


def _shown(value):
    """Every value a template prints: control characters made visible (no display spoofing), then
    escaped. Markup (charts, blocks rendered here) gets the same: the controls are never markup."""
    if isinstance(value, markupsafe.Markup):
        shown = controls.visible(value)
        return value if shown is value else markupsafe.Markup(shown)
    return controls.visible(value) if isinstance(value, str) else value


def pct(value, digits: int = 1) -> str:
    return "" if value is None else f"{100 * value:.{digits}f}%"


def num(value, digits: int = 1) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)
