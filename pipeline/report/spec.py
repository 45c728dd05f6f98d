"""What the report shell needs to know of the audit it renders: its measures, who a case belongs to, its
own sections and column labels, all from its manifest (``audit.toml``) and parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline import audits


@dataclass(frozen=True)
class MeasureDef:
    measure_id: str
    label: str
    numerator: str  # in words
    denominator: str
    unit: str
    direction: str
    headline: bool
    trend: bool


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    template: Path
    sql: Path | None


@dataclass(frozen=True)
class ReportSpec:
    audit_id: str
    title: str
    short_title: str
    case_unit: str
    guideline: dict
    parameters: dict
    measures: list[MeasureDef]
    case_department: str | None
    case_provider: str | None
    case_department_label: str
    second_view_department: str | None
    second_view_label: str
    case_date: str
    funnel_measure: str | None
    columns: dict = field(default_factory=dict)  # column -> (header, note)
    case_list_notes: list[str] = field(default_factory=list)
    # words after "the N cases with an audited order" (the flagged section): that N beside a headline N of another
    # population that can be the same number (low back pain: complicated episodes too; its rate: uncomplicated only)
    audited_cases_note: str = ""
    sections: list[Section] = field(default_factory=list)
    definitions: Path | None = None  # report/definitions.html: the audit's definitions in the Methods
    # report/period_note.html (+ .sql): what the first page says of the period beside "provisional" (every page)
    period_note: Section | None = None
    # report/verified_from.sql: the first date whose units' look-back lies within the data (the feed's look_back)
    verified_from: Path | None = None
    report_dir: Path | None = None  # the audit's section templates
    labels: dict = field(default_factory=dict)  # the audit's keys in words ([report] labels; names.label)
    label_columns: tuple = ()  # its own columns of '|'-separated keys the workbook shows in words
    why_columns: tuple = ()  # its own columns the workbook's Why (in words) names: what a reviewer confirms
    # verdict -> the denominator of its reasons' shares in words: its measure's (Audit.reason_measure), so the
    # orders by reason and the headline name the same N, else the engine's
    reason_denominators: dict = field(default_factory=dict)

    @property
    def headline_ids(self) -> list[str]:
        return [m.measure_id for m in self.measures if m.headline]

    @property
    def department_ids(self) -> list[str]:
        """The headline measures a department table splits: a case measure only when a case belongs to a
        department (``case_department``); else it is hospital-wide and stays in the headline."""
        return [m.measure_id for m in self.measures if m.headline and (m.unit == "order" or self.case_department)]

    def column_header(self, column: str, default: str) -> str:
        """The header the workbook gives a case-list column ([report] columns), so the printed case list and the
        reviewer's workbook name a column alike; ``default`` where the audit names none."""
        return self.columns[column][0] if column in self.columns else default

    @property
    def provider_ids(self) -> list[str]:
        """The headline measures a provider has: a case measure only when a case belongs to a provider
        (``case_provider``); else the provider has no cell of it, and a column of it would stay empty."""
        return [m.measure_id for m in self.measures if m.headline and (m.unit == "order" or self.case_provider)]

    @property
    def trend_measures(self) -> list[MeasureDef]:
        return [m for m in self.measures if m.trend]

    def measure(self, measure_id: str | None) -> MeasureDef | None:
        return next((m for m in self.measures if m.measure_id == measure_id), None)

    @classmethod
    def of(cls, audit, parameters: dict | None = None) -> ReportSpec:
        parameters = audit.parameters if parameters is None else parameters
        report = audit.manifest.get("report", {})
        measures = [
            MeasureDef(
                m.id,
                audits.with_parameters(m.label, parameters),
                audits.with_parameters(m.numerator_label, parameters) or m.numerator,
                audits.with_parameters(m.denominator_label, parameters) or m.denominator,
                m.unit,
                m.direction,
                m.headline,
                m.trend,
            )
            for m in audit.measures
        ]
        funnel = report.get("funnel_measure") or next((m.id for m in audit.measures if m.headline and m.unit == "order"), None)
        titles = report.get("section_titles", {})
        sections = [
            Section(
                name,
                titles.get(name, name.replace("_", " ").capitalize()),
                audit.report_dir / f"{name}.html",
                audit.report_dir / f"{name}.sql" if (audit.report_dir / f"{name}.sql").is_file() else None,
            )
            for name in audit.report_sections
        ]
        definitions = audit.report_dir / "definitions.html"
        note = audit.report_dir / "period_note.html"
        note_sql = note.with_suffix(".sql")
        verified_from = audit.report_dir / "verified_from.sql"
        by_id = {m.measure_id: m for m in measures}
        reason_denominators = {}
        for v in audits.verdicts():
            m = audit.reason_measure(v)
            reason_denominators[v] = by_id[m.id].denominator if m else audits.REASON_DENOMINATORS[audits.verdict_class(v)][1]
        return cls(
            audit_id=audit.id,
            title=audit.title,
            short_title=audit.short_title,
            case_unit=audit.case_unit,
            guideline=dict(audit.guideline),
            parameters=dict(parameters),
            measures=measures,
            case_department=report.get("case_department"),
            case_provider=report.get("case_provider"),
            case_department_label=report.get("case_department_label", "attributed"),
            second_view_department=report.get("second_view_department"),
            second_view_label=report.get("second_view_label", "second view"),
            case_date=report.get("case_date", "index_date"),
            funnel_measure=funnel,
            columns={k: tuple(v) for k, v in report.get("columns", {}).items()},
            case_list_notes=[audits.with_parameters(n, parameters) for n in report.get("case_list_notes", [])],
            audited_cases_note=audits.with_parameters(report.get("audited_cases_note", ""), parameters),
            sections=sections,
            definitions=definitions if definitions.is_file() else None,
            period_note=Section("period_note", "", note, note_sql if note_sql.is_file() else None) if note.is_file() else None,
            verified_from=verified_from if verified_from.is_file() else None,
            report_dir=audit.report_dir if audit.report_dir.is_dir() else None,
            labels=dict(report.get("labels", {})),
            label_columns=tuple(report.get("label_columns", ())),
            why_columns=tuple(report.get("why_columns", ())),
            reason_denominators=reason_denominators,
        )

    @classmethod
    def from_run_info(cls, run_info: dict) -> ReportSpec:
        """The spec of the audit run.json names (its parameters as the run recorded them)."""
        audit_id = run_info.get("audit", {}).get("id")
        found = {a.id: a for a in audits.discover(run_info.get("config", {}).get("audits_path"))}
        if audit_id not in found:
            raise KeyError(f"run_info names no known audit ({audit_id!r})")
        return cls.of(found[audit_id], run_info.get("audit", {}).get("parameters"))
