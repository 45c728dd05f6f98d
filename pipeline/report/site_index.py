"""The site index ``OUT/index.html``: every audit's published folders (one period, or a backfill's months)
with their headline rates, read from each folder's run.json."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline import faults
from pipeline.audits import with_parameters
from pipeline.months import MONTH
from pipeline.report import sections
from pipeline.report.feed import SCHEMA_VERSION
from pipeline.report.outputs import read_json_object
from pipeline.report.paper import DEFAULT, PAPERS, paper_of
from pipeline.report.templates import make_env

SITE_INDEX_TEMPLATE = "site_index.html"


def _entry(folder: Path, href: str, info: dict) -> dict:
    audit = info.get("audit", {})
    headline_ids = [m["id"] for m in audit.get("measures", []) if m.get("headline")]
    # a label's {parameter} placeholders filled with the parameters the run used, as the report fills them
    labels = {m["id"]: with_parameters(m["label"], audit.get("parameters", {})) for m in audit.get("measures", [])}
    # marked as the run's own report marks them: a site index at 20 left unmarked a rate the report marked at 30
    low = sections.low_reliability(info)
    rows = {r.get("measure_id"): sections.marked(r, low) for r in info.get("headline", [])}
    units = {m["id"]: m.get("unit") for m in audit.get("measures", [])}
    directions = {m["id"]: m.get("direction") for m in audit.get("measures", [])}
    departments = folder / "departments"
    maturity = info.get("status", {}).get("maturity") or {}  # pipeline.period_status: the period's own state
    # what this run changed since the run before it audited the period (history.record_period), dated by its start:
    # the committee tells which month moved since it last met
    revised = info.get("status", {}).get("revised")
    revised = {**revised, "on": str(info.get("started_at", ""))[:10]} if revised and revised.get("orders") else None
    # a final period published provisional before (period_status.finalised): the run that made it final, this one
    # (run_id None) or an earlier one, so the mark stays on later reruns
    final = info.get("status", {}).get("finalised")
    if final:
        final = {
            **final,
            "run_id": final["run_id"] or info.get("run_id", ""),
            "on": final["on"] or str(info.get("started_at", ""))[:10],
        }
        if revised and final["run_id"] == info.get("run_id"):
            revised = None  # the final mark says what this run changed
    return {
        "period": info.get("period", ""),
        # 'all' by the months it spans, as its report names it (run.json status: each audit's own months)
        "period_label": info.get("status", {}).get("period") or info.get("period", ""),
        "revised": revised,
        "final": final,
        "provisional_until": maturity.get("final_from") if maturity.get("status") == "provisional" else None,
        # what the FHIR export's manifest says the data lack, as the report's first page says it
        "export_limits": [e["title"] for e in sections.export_limits(info)],
        # what the audit says of the period itself (report/period_note.html), its title, as the report's first page
        "notes": [n["title"] for n in info.get("period_notes") or [] if n.get("title")],
        "href": href,
        "run_id": info.get("run_id", ""),
        "started_at": str(info.get("started_at", "")),
        "low": low,
        "paper": paper_of(info),
        "pdf": (folder / "report.pdf").is_file(),
        "feed": (folder / "metrics.csv").is_file(),  # a backfill's month has none (its feed: the audit's folder)
        "n_departments": len(list(departments.glob("*.html"))) if departments.is_dir() else 0,
        # an empty cell names what the measure counts: "no cases" read wrong under an order measure
        # and which way it is good: a higher-is-better rate sits beside a lower-is-better one
        "measures": [
            {"label": labels.get(m, m), "row": rows.get(m), "unit": units.get(m), "direction": directions.get(m)}
            for m in headline_ids
        ],
    }


def render_site_index(out_root: Path, also: Path | None = None) -> Path:
    """Write ``out_root/index.html`` listing every audit folder (``<id>/run.json``) and every month folder
    of a backfill (``<id>/<YYYY-MM>/run.json``) present. Cheap and idempotent: a backfill calls it after
    each month. The page is written to a temporary file and renamed into place. ``also``: the plain --out a
    staged tree goes into file by file, whose folders this run does not publish stay and are listed too (an
    audit not run: its index had dropped it while its folder stayed)."""
    out_root = Path(out_root)
    audits = []
    roots = [r for r in (out_root, also) if r is not None and Path(r).is_dir()]
    names = sorted({p.name for r in roots for p in Path(r).iterdir() if p.is_dir() and not p.name.startswith(".")})
    for name in names:
        # the staged folder of an audit this run publishes; else the one --out holds (``also``)
        folder = next(Path(r) / name for r in roots if (Path(r) / name).is_dir())
        entries = []
        if (folder / "run.json").is_file():
            entries.append(_entry(folder, f"{folder.name}/", read_json_object(folder / "run.json")))
        found = {p.name: p for r in reversed(roots) if (Path(r) / name).is_dir() for p in (Path(r) / name).iterdir()}
        months = sorted((p for p in found.values() if MONTH.match(p.name) and (p / "run.json").is_file()), reverse=True)
        entries += [_entry(m, f"{folder.name}/{m.name}/", read_json_object(m / "run.json")) for m in months]
        if entries:
            first = read_json_object(folder / "run.json" if (folder / "run.json").is_file() else months[0] / "run.json")
            audit = first.get("audit", {})
            audits.append(
                {
                    "id": folder.name,
                    "title": audit.get("title", folder.name),
                    "version": first.get("rule_set_version", ""),
                    "case_unit": audit.get("case_unit", "case"),
                    "entries": entries,
                    # a backfill's one feed, in the audit's folder beside its months (none of a period of its own)
                    "feed": not (folder / "run.json").is_file() and (folder / "metrics.csv").is_file(),
                }
            )
    listed = [e for a in audits for e in a["entries"]]
    # printed on the latest run's paper; the footnote names each threshold the marks used (a config changed between
    # a backfill's months and a later run marks each by its own)
    paper = max(listed, key=lambda e: e["started_at"])["paper"] if listed else PAPERS[DEFAULT]
    lows = sorted({e["low"] for e in listed}) or [20]
    html = (
        make_env().get_template(SITE_INDEX_TEMPLATE).render(audits=audits, schema_version=SCHEMA_VERSION, lows=lows, paper=paper)
    )
    target = out_root / "index.html"
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = out_root / f".index.html.tmp-{os.getpid()}"
    tmp.write_text(html, encoding="utf-8", newline="\n")
    faults.maybe_fail("mid_index")  # a kill here leaves the temp file: the next run's sweep (outputs.sweep) removes it
    os.replace(tmp, target)
    return target
