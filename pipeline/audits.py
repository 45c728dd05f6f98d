"""Audits as folders: discovery, the manifest, and its validation.

An audit is a folder ``<id>/`` holding ``audit.toml`` (the manifest), ``rules.csv`` (the rule
registry: each rule names the boolean column of ``<id>__int_order_flags`` it reads),
``value_sets.csv`` and ``code_map.csv`` (its reference data), ``sql/<id>__*.sql`` (its models),
``report/`` (its own report sections), ``expectations/`` (its own data-quality checks), ``deck/``
(its test patients) and optionally ``scenarios.py`` (its generator scenarios). The engine names no
audit: it finds them here.

Audits are found in the shipped ``audits/`` folder and in every folder named by the config's
``audits_path`` or the ``ORDER_AUDIT_AUDITS_PATH`` environment variable (``os.pathsep``-separated).
Each such folder is an audit folder (it holds ``audit.toml``) or a folder of audit folders.
A folder that fails validation is not run; its problem is one line naming the file and what to fix.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import ConfigError, printable
from pipeline.ingest.contract import CONTRACT_BY_NAME
from pipeline.resources import audits_dir

AUDITS_PATH_ENV = "ORDER_AUDIT_AUDITS_PATH"
MANIFEST = "audit.toml"
ID_FORM = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")  # snake_case; no double underscore (the prefix separator)
RULE_COLUMNS = ["rule_id", "reason_code", "label", "verdict", "flag_column", "explanation", "citation"]
VALUE_SET_COLUMNS = ["value_set", "code_system", "code", "match", "description", "valid_from", "valid_to", "source"]
FLAG_FORM = re.compile(r"^(is|has)_[a-z0-9_]+$")
LABEL_MAX = 60  # a rule's label is a short phrase people read in tables (the explanation says the rest)
MEASURE_UNITS = ("order", "case")
MEASURE_KEYS = (
    "id",
    "label",
    "unit",
    "numerator",
    "denominator",
    "direction",
    "headline",
    "trend",
    "numerator_label",
    "denominator_label",
)
REPORT_KEYS = (
    "sections",  # the audit's own sections, report/<name>.html (+ .sql), in the report's body
    "case_department",  # the mart_cases column naming the department a case belongs to (else: hospital-wide)
    "case_provider",  # ... and its provider
    "case_department_label",  # what that department is, in words ("first imaging order")
    "second_view_department",  # a second, labelled view of the cases by department (mart_cases column)
    "second_view_label",
    "case_date",  # the mart_cases column with the case's local date (the case list; default index_date)
    "funnel_measure",  # the measure of the funnel plot and department chart (default: the first headline order measure)
    "columns",  # output column -> [header, note] for the workbook and the case list
    "section_titles",  # section name -> its title in the report's contents line
    "case_list_notes",  # sentences printed above the flagged cases (how to read their times ...)
    "audited_cases_note",  # words after "the N cases with an audited order": who they are, beside the headline's N
    "labels",  # key -> words: the audit's own keys (a recorded value, a group) as the report prints them
    "label_columns",  # its own columns of '|'-separated keys the workbook shows in words (the keys kept beside)
    "why_columns",  # its own columns the workbook's Why (in words) names after the reasons: what a reviewer confirms
)
DIRECTIONS = ("higher_is_better", "lower_is_better", "neutral")
# [report.columns] styles: how the workbook shows an audit's own column (pipeline/report/workbook.py writes each)
COLUMN_STYLES = ("", "wrap", "date", "datetime", "hours", "typed", "count", "duration")
LAYERS = ("stg", "int", "mart")
# the models every audit provides: the engine reads them (verdicts, keys, outputs)
REQUIRED_MODELS = (
    "int_patients",
    "int_order_flags",
    "int_audited_orders",
    "int_case_summary",
    "mart_audited_orders",
    "mart_cases",
    "mart_attrition",
)
VERDICTS_CSV = Path(__file__).resolve().parent / "models" / "verdicts.csv"


@dataclass(frozen=True)
class Measure:
    """A rate the audit declares: numerator and denominator are SQL booleans over the unit's mart."""

    id: str
    label: str
    unit: str  # order -> <id>__mart_audited_orders; case -> <id>__mart_cases
    numerator: str
    denominator: str
    direction: str
    headline: bool = False
    trend: bool = False  # drawn as a p-chart (default: the headline measures)
    numerator_label: str = ""  # n and N in words for the report (default: the SQL)
    denominator_label: str = ""


# The orders a reason's share is taken over, by the reason's verdict, where no measure of the audit counts
# that verdict (the engine's vocabulary): all audited orders for an exclusion, those not excluded for a
# not-evaluable reason, evaluated orders for the rest. SQL over the unit's rows, and the same in words.
EVALUATED = "verdict IN ('appropriate', 'inappropriate', 'review')"
REASON_DENOMINATORS = {
    "excluded": ("TRUE", "all audited orders"),
    "not_evaluable": ("verdict <> 'excluded'", "audited orders not excluded"),
    "evaluated": (EVALUATED, "evaluated orders (appropriate, inappropriate or review)"),
}
VERDICT_MEASURE = re.compile(r"^\s*verdict\s*=\s*'([a-z_]+)'\s*$")  # a measure counting one verdict's orders


def counted_verdict(unit: str, numerator: str | None) -> str | None:
    """The verdict whose orders a measure counts (an order measure whose numerator is ``verdict = '<verdict>'``),
    else None: what a reason's share takes its denominator (``Audit.reason_measure``) and its direction
    (``report.measure.directions``) from."""
    hit = VERDICT_MEASURE.match(numerator or "") if unit == "order" else None
    return hit.group(1) if hit else None


def verdict_class(verdict: str) -> str:
    """The class of orders a verdict's reasons are shared over: its own for the two kinds of leaving out."""
    return verdict if verdict in ("excluded", "not_evaluable") else "evaluated"


@dataclass(frozen=True)
class Audit:
    id: str
    folder: Path
    title: str
    short_title: str
    version: str
    case_unit: str
    guideline: dict
    code_sets: dict
    study_types: tuple[str, ...]  # declared in [code_map] (beyond those its code_map.csv uses)
    required_tables: tuple[str, ...]
    optional_tables: tuple[str, ...]
    required_columns: dict[str, tuple[str, ...]]
    optional_columns: dict[str, tuple[str, ...]]
    parameters: dict  # defaults; the config's [audits.<id>] overrides them (``parameters_for``)
    measures: tuple[Measure, ...]
    report_sections: tuple[str, ...]
    maturity_days: tuple  # parameter names or numbers whose sum is the month's maturity horizon
    parquet_types: dict = field(default_factory=dict)  # mart -> text column -> type in the Parquet files
    problem: str | None = None  # why the audit cannot run (one line), else None
    manifest: dict = field(default_factory=dict, repr=False)

    @property
    def rule_set_version(self) -> str:
        """What every output row of the audit carries: the id (hyphens) and the rule-set version."""
        return f"{self.id.replace('_', '-')}-{self.version}"

    def reason_measure(self, verdict: str) -> Measure | None:
        """The order measure a reason of this verdict is shared like: the one counting the verdict's orders
        (numerator ``verdict = '<verdict>'``), else the first counting another verdict of its class. A reason's
        share then has the denominator of the measure that counts its orders, on every page and in the feed;
        without one it takes the engine's (``REASON_DENOMINATORS``)."""
        counting = {}
        for m in self.measures:
            if counts := counted_verdict(m.unit, m.numerator):  # not `verdict`: the reason's, asked about
                counting.setdefault(counts, m)
        if verdict in counting:
            return counting[verdict]
        return next((m for v, m in counting.items() if verdict_class(v) == verdict_class(verdict)), None)

    def reason_denominator(self, verdict: str) -> str:
        """The SQL over the audited orders of a reason's denominator (see ``reason_measure``)."""
        m = self.reason_measure(verdict)
        return m.denominator if m else REASON_DENOMINATORS[verdict_class(verdict)][0]

    @property
    def runnable(self) -> bool:
        return self.problem is None

    @property
    def rules_csv(self) -> Path:
        return self.folder / "rules.csv"

    @property
    def value_sets_csv(self) -> Path:
        return self.folder / "value_sets.csv"

    @property
    def code_map_csv(self) -> Path:
        return self.folder / "code_map.csv"

    @property
    def sql_dir(self) -> Path:
        return self.folder / "sql"

    @property
    def report_dir(self) -> Path:
        return self.folder / "report"

    @property
    def expectations_dir(self) -> Path:
        return self.folder / "expectations"

    @property
    def deck_dir(self) -> Path:
        return self.folder / "deck"

    def model_name(self, name: str) -> str:
        """``int_cases`` -> ``<id>__int_cases``."""
        return f"{self.id}__{name}"

    def tables_needed(self) -> tuple[str, ...]:
        return self.required_tables


# ----------------------------------------------------------------------------- discovery


def search_paths(extra: list[str] | None = None) -> list[Path]:
    """The folders searched, in order: the shipped audits, the config's audits_path, the environment's."""
    paths = [audits_dir()]
    paths += [Path(p) for p in (extra or [])]
    env = os.environ.get(AUDITS_PATH_ENV, "")
    paths += [Path(p) for p in env.split(os.pathsep) if p.strip()]
    return paths


def _audit_folders(root: Path) -> list[Path]:
    if (root / MANIFEST).is_file():
        return [root]
    if not root.is_dir():
        raise ConfigError(f"{root}: audits folder not found; fix audits_path in the config or ${AUDITS_PATH_ENV}")
    return sorted(p for p in root.iterdir() if (p / MANIFEST).is_file())


def discover(extra: list[str] | None = None) -> list[Audit]:
    """Every audit folder on the search path, validated (an invalid one carries its ``problem``), by id."""
    found: dict[str, Audit] = {}
    for root in search_paths(extra):
        for folder in _audit_folders(root):
            audit = load(folder)
            if audit.id in found:
                raise ConfigError(
                    f"{folder / MANIFEST}: audit id {audit.id} is also {found[audit.id].folder}; each audit id once"
                )
            found[audit.id] = audit
    return [found[k] for k in sorted(found)]


# ----------------------------------------------------------------------------- the manifest


def _fail(path: Path, message: str):
    raise ConfigError(f"{path}: {message}")


def _strings(value, path: Path, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _fail(path, f"{where} must be a list of names")
    return tuple(value)


def _columns_by_table(value, path: Path, where: str) -> dict[str, tuple[str, ...]]:
    out = {}
    for table, cols in (value or {}).items():
        contract = CONTRACT_BY_NAME.get(table)
        if contract is None:
            _fail(path, f"{where}: unknown table {table}; known: {', '.join(CONTRACT_BY_NAME)}")
        cols = _strings(cols, path, f"{where}.{table}")
        unknown = [c for c in cols if c not in contract.columns]
        if unknown:
            _fail(path, f"{where}.{table}: {', '.join(unknown)} not in the input contract of {table}")
        out[table] = cols
    return out


def _measures(items, path: Path) -> tuple[Measure, ...]:
    out, seen = [], set()
    for i, m in enumerate(items or [], start=1):
        where = f"[[measures]] {i} ({m.get('id', '?')})"
        missing = [k for k in ("id", "label", "unit", "numerator", "denominator", "direction") if not str(m.get(k, "")).strip()]
        if missing:
            _fail(path, f"{where} lacks {', '.join(missing)}")
        if m["unit"] not in MEASURE_UNITS:
            _fail(path, f"{where}: unit '{m['unit']}' must be one of {', '.join(MEASURE_UNITS)}")
        if m["direction"] not in DIRECTIONS:
            _fail(path, f"{where}: direction '{m['direction']}' must be one of {', '.join(DIRECTIONS)}")
        if not ID_FORM.match(m["id"]) or m["id"] in seen:
            _fail(path, f"{where}: id must be snake_case and unique")
        unknown = set(m) - set(MEASURE_KEYS)
        if unknown:
            _fail(path, f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        seen.add(m["id"])
        headline = bool(m.get("headline"))
        out.append(
            Measure(
                m["id"],
                m["label"],
                m["unit"],
                m["numerator"],
                m["denominator"],
                m["direction"],
                headline,
                bool(m.get("trend", headline)),
                str(m.get("numerator_label", "")),
                str(m.get("denominator_label", "")),
            )
        )
    return tuple(out)


def _parameters(values: dict, path: Path) -> dict:
    for name, value in values.items():
        if not ID_FORM.match(name):
            _fail(path, f"[parameters] {name}: a parameter name is snake_case (it becomes a column)")
        if not isinstance(value, (bool, int, float, str)):
            _fail(path, f"[parameters] {name}: a number, a string or true/false, not {type(value).__name__}")
    return dict(values)


def _report_sections(report: dict, path: Path) -> tuple[str, ...]:
    unknown = set(report) - set(REPORT_KEYS)
    if unknown:
        _fail(path, f"[report]: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(REPORT_KEYS)}")
    labels = report.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) and v.strip() for v in labels.values()):
        _fail(path, '[report] labels: a table of key = "words" (e.g. pencil_point = "Pencil-point"), each non-blank')
    _strings(report.get("label_columns"), path, "[report] label_columns")
    _strings(report.get("why_columns"), path, "[report] why_columns")
    columns = report.get("columns", {})
    shape = 'name = ["Header", width, "note", "style"] (optionally "form" after the style)'
    if not isinstance(columns, dict):
        _fail(path, f"[report.columns]: a table of {shape}")
    for name, spec in columns.items():
        # a misspelt style ("cnt") was a KeyError, exit 70, when the workbook was written after the whole run
        if not (isinstance(spec, list) and 3 <= len(spec) <= 5 and isinstance(spec[1], (int, float))):
            _fail(path, f"[report.columns] {name}: write it as {shape}")
        if len(spec) > 3 and spec[3] not in COLUMN_STYLES:
            _fail(path, f"[report.columns] {name}: style {spec[3]!r} is not one of {', '.join(map(repr, COLUMN_STYLES))}")
        if len(spec) > 4 and spec[4] != "form":
            _fail(path, f'[report.columns] {name}: the fifth item is "form" (printed on the case list) or absent')
    return _strings(report.get("sections"), path, "[report] sections")


MANIFEST_KEYS = {
    "id", "title", "short_title", "version", "case_unit", "guideline", "code_sets", "code_map", "inputs",
    "parameters", "measures", "report", "maturity", "outputs",
}  # fmt: skip
PARQUET_MARTS = ("mart_audited_orders", "mart_cases")  # the marts written as Parquet
PARQUET_KINDS = ("TIMESTAMPTZ", "TIMESTAMP", "DATE")  # UTC instants, site-local wall-clock times, dates


def _parquet_types(outputs: dict, path: Path) -> dict[str, dict[str, str]]:
    """[outputs.parquet_types]: mart -> {column: type} of the text columns the Parquet files type."""
    unknown = set(outputs) - {"parquet_types"}
    if unknown:
        _fail(path, f"[outputs]: unknown key(s) {', '.join(sorted(unknown))}; known: parquet_types")
    out = {}
    for table, columns in outputs.get("parquet_types", {}).items():
        if table not in PARQUET_MARTS or not isinstance(columns, dict):
            _fail(path, f"[outputs.parquet_types] {table}: name one of {', '.join(PARQUET_MARTS)} with {{column = type}}")
        for column, kind in columns.items():
            if kind not in PARQUET_KINDS:
                _fail(path, f"[outputs.parquet_types] {table}.{column} = {kind!r}: a type is one of {', '.join(PARQUET_KINDS)}")
        out[table] = dict(columns)
    return out


def load(folder: Path) -> Audit:
    """Read and check one audit folder: a broken manifest raises; a folder that cannot run yet (a
    missing model, rule file or report section) comes back with ``problem`` set."""
    path = folder / MANIFEST
    try:
        m = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        _fail(path, f"not valid TOML ({exc}); fix the file")
    unknown = set(m) - MANIFEST_KEYS
    if unknown:
        _fail(path, f"unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(MANIFEST_KEYS))}")
    audit_id = m.get("id")
    if audit_id != folder.name:
        _fail(path, f"id = {audit_id!r} must be the folder's name ({folder.name!r})")
    if not ID_FORM.match(audit_id):
        _fail(path, f"id {audit_id!r} must be snake_case letters and digits (no double underscore)")
    for key in ("title", "version"):
        if not isinstance(m.get(key), str) or not m[key].strip():
            _fail(path, f"{key} is required (a string)")
    inputs = m.get("inputs", {})
    required = _strings(inputs.get("required"), path, "[inputs] required")
    optional = _strings(inputs.get("optional"), path, "[inputs] optional")
    for table in (*required, *optional):
        if table not in CONTRACT_BY_NAME:
            _fail(path, f"[inputs]: unknown table {table}; known: {', '.join(CONTRACT_BY_NAME)}")
    if not required:
        _fail(path, "[inputs] required names no table: an audit reads at least one input table")
    guideline = m.get("guideline", {})
    if not str(guideline.get("reference", "")).strip():
        _fail(path, "[guideline] reference is required (the citation the report's methods print)")
    parameters = _parameters(m.get("parameters", {}), path)
    maturity = m.get("maturity", {}).get("days_after_month", [])
    for item in maturity:
        if not (isinstance(item, (int, float)) or item in parameters):
            _fail(path, f"[maturity] days_after_month: {item!r} is neither a number nor a parameter")
    audit = Audit(
        id=audit_id,
        folder=folder,
        title=m["title"],
        short_title=m.get("short_title") or m["title"],
        version=m["version"],
        case_unit=m.get("case_unit", "case"),
        guideline=dict(guideline),
        code_sets=dict(m.get("code_sets", {})),
        study_types=_strings(m.get("code_map", {}).get("study_types"), path, "[code_map] study_types"),
        required_tables=required,
        optional_tables=optional,
        required_columns=_columns_by_table(inputs.get("required_columns"), path, "[inputs.required_columns]"),
        optional_columns=_columns_by_table(inputs.get("optional_columns"), path, "[inputs.optional_columns]"),
        parameters=parameters,
        measures=(measures := _measures(m.get("measures"), path)),
        report_sections=_report_sections(m.get("report", {}), path),
        maturity_days=tuple(maturity),
        parquet_types=_parquet_types(m.get("outputs", {}), path),
        manifest=m,
    )
    funnel = m.get("report", {}).get("funnel_measure")
    if funnel is not None and funnel not in {x.id for x in measures}:
        # an unknown one printed "Funnel position ()" and "every provider with against the 95% limits"
        _fail(path, f"[report] funnel_measure = {funnel!r} is no measure of the audit ({', '.join(x.id for x in measures)})")
    return _with_problem(audit)


def check_report_columns(audit: Audit, orders: set[str], cases: set[str], engine: set[str]) -> None:
    """Every column the manifest's [report] names is a column of the marts it is read from: an unknown one was left
    out without a word (a label column, a workbook column) or named an empty department. ``orders``, ``cases``: the
    columns of its mart_audited_orders and mart_cases; ``engine``: the columns the engine adds to the case list."""
    report = audit.manifest.get("report", {})
    path = audit.folder / MANIFEST
    for key in ("case_department", "case_provider", "second_view_department", "case_date"):
        name = report.get(key)
        if name is not None and name not in cases:
            _fail(path, f"[report] {key} = {name!r} is no column of the audit's mart_cases; name one of its columns")
    for key in ("label_columns", "why_columns"):
        missing = [c for c in report.get(key, ()) if c not in orders | cases]
        if missing:
            _fail(path, f"[report] {key} names {', '.join(missing)}, no column of the audit's mart_audited_orders or mart_cases")
    # the case list's own: the case's date and department, and its second view's department as case_department
    given = orders | engine | {report.get("case_date", "index_date"), report.get("case_department")}
    given |= {"case_department"} if report.get("second_view_department") else set()
    missing = [c for c in report.get("columns", {}) if c not in given]
    if missing:
        _fail(path, f"[report.columns] names {', '.join(missing)}, no column of the audit's mart_audited_orders")


def _with_problem(audit: Audit) -> Audit:
    import dataclasses

    try:
        check_files(audit)
    except ConfigError as exc:
        return dataclasses.replace(audit, problem=exc.message)
    return audit


# ----------------------------------------------------------------------------- the folder's files


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def verdicts() -> list[str]:
    """The engine's verdict vocabulary, in precedence order (1 wins)."""
    _, rows = read_csv(VERDICTS_CSV)
    return [r["verdict"] for r in sorted(rows, key=lambda r: int(r["precedence"]))]


def plain_number(value) -> str:
    """A parameter in words: 72.0 -> '72', 0.5 -> '0.5'."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def with_parameters(text: str, parameters: dict) -> str:
    """Words with ``{parameter}`` placeholders filled from the audit's parameters in force (a measure's label, a
    rule's label and explanation): what a reader sees follows a changed window. Text that names no known
    parameter (or holds a lone brace) stays as written; ``check_rules`` refuses a rule that names an unknown one."""
    try:
        return text.format_map({k: plain_number(v) for k, v in parameters.items()})
    except (KeyError, ValueError, IndexError):
        return text


# the rules.csv columns whose {parameter} placeholders are filled: a citation of the audit's own definition
# names its window too (a guideline's citation quotes the guideline and has none)
RULE_WORDS = ("label", "explanation", "citation")


def rules_in_force(audit: Audit, parameters: dict | None = None) -> list[dict[str, str]]:
    """rules.csv (``check_rules``) with each rule's label, explanation and citation in the words of the parameters in force
    (default: the manifest's): the warehouse's ``ref_rules`` (and so the verdicts' explanations, the report, the
    workbook) and the README's rule tables read them, so none says 72 hours when the run used 48."""
    values = audit.parameters if parameters is None else parameters
    return [{**r, **{k: with_parameters(r[k], values) for k in RULE_WORDS}} for r in check_rules(audit)]


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def check_rules(audit: Audit) -> list[dict[str, str]]:
    """rules.csv, checked: the registry's columns, known verdicts, one flag column per rule, placeholders that
    name the audit's parameters. The rows as written (``rules_in_force`` fills the placeholders)."""
    path = audit.rules_csv
    if not path.is_file():
        _fail(path, "rules.csv missing: every audit has a rule registry (columns " + ", ".join(RULE_COLUMNS) + ")")
    columns, rows = read_csv(path)
    if columns != RULE_COLUMNS:
        _fail(path, f"line 1: columns must be {', '.join(RULE_COLUMNS)} (found {', '.join(columns)})")
    known = verdicts()
    seen: dict[str, set] = {"rule_id": set(), "reason_code": set(), "flag_column": set()}
    for line, r in enumerate(rows, start=2):
        if r["verdict"] not in known:
            _fail(path, f"line {line}: verdict '{r['verdict']}' is not one of {', '.join(known)}")
        if not FLAG_FORM.match(r["flag_column"] or ""):
            _fail(path, f"line {line}: flag_column '{r['flag_column']}' must be a boolean column name (is_... or has_...)")
        if not ID_FORM.match(r["reason_code"] or ""):
            _fail(path, f"line {line}: reason_code '{r['reason_code']}' must be snake_case")
        for key, values in seen.items():
            if r[key] in values:
                _fail(path, f"line {line}: {key} {r[key]} is listed twice")
            values.add(r[key])
        for column in RULE_WORDS:
            unknown = [n for n in _PLACEHOLDER.findall(r[column] or "") if n not in audit.parameters]
            if unknown:
                _fail(
                    path,
                    f"line {line}, column {column}: {{{unknown[0]}}} is no parameter of the audit "
                    f"(audit.toml [parameters]: {', '.join(sorted(audit.parameters)) or 'none'})",
                )
        label = with_parameters(r["label"] or "", audit.parameters).strip()
        if not label or len(label) > LABEL_MAX or "|" in label:
            _fail(
                path,
                f"line {line}, column label: rule {r['rule_id']} needs a readable label of at most {LABEL_MAX} characters "
                "without '|' (what people read for its reason, e.g. 'CT as the first study')",
            )
        if "|" in r["explanation"] + r["citation"] or not r["explanation"].strip() or not r["citation"].strip():
            _fail(
                path,
                f"line {line}: explanation and citation are required (every verdict is explained with its citation) and "
                "neither may hold '|' (the outputs' list separator)",
            )
    if not rows:
        _fail(path, "lists no rule")
    return rows


def check_value_sets(audit: Audit) -> None:
    path = audit.value_sets_csv
    if not path.is_file():
        return
    columns, rows = read_csv(path)
    if columns != VALUE_SET_COLUMNS:
        _fail(path, f"line 1: columns must be {', '.join(VALUE_SET_COLUMNS)}")
    for line, r in enumerate(rows, start=2):
        if r["match"] not in ("exact", "prefix"):
            _fail(path, f"line {line}: match '{r['match']}' must be exact or prefix")
        for key in ("valid_from", "valid_to"):
            if r[key] or key == "valid_from":
                try:
                    dt.date.fromisoformat(r[key])
                except ValueError:
                    _fail(path, f"line {line}: {key} '{r[key]}' is not a date (YYYY-MM-DD); valid_from is always filled")


def model_files(audit: Audit) -> dict[str, Path]:
    """``<id>__<layer>_<name>`` -> its file, checked: the prefix and a layer the name starts with."""
    found = {}
    if not audit.sql_dir.is_dir():
        return found
    for path in sorted(audit.sql_dir.glob("*.sql")):
        name = path.stem
        rest = name.removeprefix(f"{audit.id}__")
        if rest == name:
            _fail(path, f"a model of audit {audit.id} is named {audit.id}__<layer>_<name>.sql")
        if rest.split("_", 1)[0] not in LAYERS:
            _fail(path, f"the name after {audit.id}__ starts with its layer: {', '.join(f'{x}_' for x in LAYERS)}")
        found[name] = path
    return found


def check_files(audit: Audit) -> None:
    """What the engine needs of the folder to run the audit: the registry, the models, the sections, its suites."""
    check_rules(audit)
    check_value_sets(audit)
    models = model_files(audit)
    missing = [audit.model_name(m) for m in REQUIRED_MODELS if audit.model_name(m) not in models]
    if missing:
        _fail(
            audit.sql_dir, f"the audit provides no {', '.join(missing)} yet (every audit provides {', '.join(REQUIRED_MODELS)})"
        )
    for name in audit.report_sections:
        if not (audit.report_dir / f"{name}.html").is_file():
            _fail(audit.report_dir / f"{name}.html", f"report section {name} is named in [report] sections but has no template")
    check_templates(audit)
    check_expectations(audit)


def check_templates(audit: Audit) -> None:
    """The audit's report templates are Jinja the engine can read (``templates.check_audit_templates``)."""
    from pipeline.report.templates import check_audit_templates

    check_audit_templates(audit.report_dir)


def check_expectations(audit: Audit) -> None:
    """The audit's own suites (``expectations/*.json``), read as the gate reads them: JSON, the shape the gate reads,
    Great Expectations' types, and tables of the input contract (``src_<table>``). A mistake was exit 70 mid-gate
    (invalid JSON, an unknown type, a missing meta.check_id) or, for a misspelt table, a suite never applied."""
    from pipeline.quality import validate

    for path in suite_files(audit):
        validate.load_suite(path, known_tables=validate.input_tables())


def suite_files(audit: Audit) -> list[Path]:
    """The audit's own data-quality suites, by name."""
    return sorted(audit.expectations_dir.glob("*.json")) if audit.expectations_dir.is_dir() else []


# ----------------------------------------------------------------------------- per run


def parameters_for(audit: Audit, overrides: dict | None, where: str = "config") -> dict:
    """The manifest's defaults with the config's ``[audits.<id>]`` values over them, each checked."""
    out = dict(audit.parameters)
    for name, value in (overrides or {}).items():
        if name not in out:
            raise ConfigError(
                f"{where}: [audits.{audit.id}] {name}: unknown parameter; known: {', '.join(sorted(out)) or '(none)'}"
            )
        default = out[name]
        if isinstance(default, bool) != isinstance(value, bool) or (
            isinstance(default, (int, float)) and not isinstance(value, (int, float))
        ):
            raise ConfigError(f"{where}: [audits.{audit.id}] {name} = {value!r}: expected a value like {default!r}")
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{where}: [audits.{audit.id}] {name} = {value!r}: expected text")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if value < 0:
                raise ConfigError(f"{where}: [audits.{audit.id}] {name} = {value!r}: expected a non-negative number")
            value = type(default)(value) if isinstance(default, float) else value
        out[name] = value
    return out


def describe(audit: Audit, overrides: dict | None = None) -> dict:
    """What `order-audit audits` says of one audit."""
    return {
        "id": audit.id,
        "title": audit.title,
        "version": audit.version,
        "rule_set_version": audit.rule_set_version,
        "case_unit": audit.case_unit,
        "required_tables": list(audit.required_tables),
        "optional_tables": list(audit.optional_tables),
        "required_columns": {t: list(c) for t, c in audit.required_columns.items()},
        "optional_columns": {t: list(c) for t, c in audit.optional_columns.items()},
        "parameters": parameters_for(audit, overrides) if audit.runnable or not overrides else audit.parameters,
        "measures": [m.id for m in audit.measures],
        "folder": str(audit.folder),
        "problem": audit.problem,
    }


def maturity_horizon_days(audit: Audit, parameters: dict) -> float:
    """Days after a month's end the loaded data must reach before the month's figures are final."""
    return float(sum(parameters[item] if isinstance(item, str) else item for item in audit.maturity_days))


def check_config(audits: list[Audit], overrides: dict, where: str) -> None:
    """Every [audits.<id>] of the config names a known audit and known parameters."""
    by_id = {a.id: a for a in audits}
    for audit_id, values in overrides.items():
        if audit_id not in by_id:
            raise ConfigError(f"{where}: [audits.{audit_id}]: no audit {audit_id}; known: {', '.join(by_id)}")
        parameters_for(by_id[audit_id], values, where)


# ----------------------------------------------------------------------------- which audits a run does


@dataclass(frozen=True)
class Plan:
    audits: list[Audit]  # the audits the run does, by id
    skipped: list[tuple[str, str]]  # (audit id, why), for the log
    missing_tables: dict[str, list[str]]  # table -> the audits skipped for want of it


NOT_READY = "its folder is not ready"  # why a plan skips an audit whose folder fails a check (``check_files``)


def named(known: list[Audit], requested: list[str]) -> list[Audit]:
    """The audits ``--audit`` names (each once, in the order given), all of ``known`` when it names none; a name no
    audit has is one line (the run's and the deck's)."""
    by_id = {a.id: a for a in known}
    unknown = [r for r in requested if r not in by_id]
    if unknown:
        raise ConfigError(
            f"--audit {printable(unknown[0])}: no such audit; known: {', '.join(by_id) or '(none)'} (order-audit audits)"
        )
    return [by_id[r] for r in dict.fromkeys(requested)] if requested else known


def plan(known: list[Audit], requested: list[str], present: dict[str, set[str]]) -> Plan:
    """The audits the data can feed: the requested ones (all when none is named), less those whose
    required table or column is absent, or whose folder cannot run (``problem``). ``present``: table ->
    the contract columns the input and the warehouse hold."""
    chosen = named(known, requested)
    run, skipped, missing = [], [], {}
    for audit in chosen:
        if not audit.runnable:
            if requested:
                raise ConfigError(f"--audit {audit.id} cannot run: {audit.problem}")
            skipped.append((audit.id, f"{NOT_READY}: {audit.problem}"))
            continue
        absent = [t for t in audit.required_tables if t not in present]
        if absent:
            skipped.append((audit.id, f"the input has no {absent[0]} table"))
            missing.setdefault(absent[0], []).append(audit.id)
            continue
        lacking = [(t, c) for t, cols in audit.required_columns.items() if t in present for c in cols if c not in present[t]]
        if lacking:
            table, column = lacking[0]
            skipped.append((audit.id, f"the {table} table has no {column} column"))
            continue
        run.append(audit)
    return Plan(sorted(run, key=lambda a: a.id), skipped, missing)
