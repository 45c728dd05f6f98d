"""Labels people read: every reason by its rules.csv label, every department by its display name, in the
report, the department pages and the workbook; the data outputs keep their codes and keys (the decks' run)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import polars as pl
import pytest
from xlsx_xml import Workbook

from pipeline import audits
from pipeline.report import workbook
from pipeline.report.audit_sections import helpers
from pipeline.report.names import department_name, in_words, label

RUNNABLE = [a for a in audits.discover() if a.runnable]


def _out(deck_runs, audit) -> Path:
    return Path(deck_runs["runs"]["combined"]["out"]) / audit.id


def _rules(audit) -> dict[str, dict]:
    return {r["reason_code"]: r for r in audits.rules_in_force(audit)}


def _reason_rows(page: str) -> list[str]:
    """The row headers of a page's reasons table (headline section)."""
    start = page.index('<section id="headline">')
    section = page[start : page.index("</section>", start)]
    return [html.unescape(t) for t in re.findall(r'<td class="rule"><a [^>]*>[^<]*</a></td><th scope="row">([^<]*)<br>', section)]


@pytest.mark.parametrize("audit", RUNNABLE, ids=[a.id for a in RUNNABLE])
def test_reasons_are_shown_by_their_labels_on_every_page(deck_runs, audit):
    rules = _rules(audit)
    labels = {r["label"] for r in rules.values()}
    out = _out(deck_runs, audit)
    pages = [out / "report.html", *sorted((out / "departments").glob("*.html"))]
    shown, listed = set(), 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        rows = _reason_rows(text)
        assert set(rows) <= labels, (page.name, set(rows) - labels)
        shown |= set(rows)
        for also in re.findall(r"also: ([^<]*)</span>", text):
            assert all(part in labels for part in html.unescape(also).split("; ")), (page.name, also)
        for why in re.findall(r'<strong class="reasons">([^<]*)\.</strong>', text):  # the case list's reasons
            assert all(part in labels for part in html.unescape(why).split("; ")), (page.name, why)
            listed += 1
    assert shown, "the deck fires reasons: the reasons tables list some"
    assert listed, "the deck has flagged cases: the case lists name their reasons"
    orders = (out / "audited_orders.csv").read_text(encoding="utf-8")
    assert any(code in orders for code in rules), "the data output keeps the reason codes"


@pytest.mark.parametrize("audit", RUNNABLE, ids=[a.id for a in RUNNABLE])
def test_the_workbook_shows_reasons_in_words_and_keeps_their_codes(deck_runs, audit):
    rules = _rules(audit)
    book = Workbook(_out(deck_runs, audit) / "case_list.xlsx")
    cases = book.rows("Cases")
    assert cases
    for row in cases:
        for words, codes in (("Reasons", "Reason codes"), ("Also fired", "Also fired (codes)")):
            expected = "; ".join(rules[c]["label"] for c in (row[codes] or "").split("|") if c)
            assert (row[words] or "") == expected, row
    assert [(r["Reason"], r["Reason code"]) for r in book.rows("Rules")] == [(r["label"], c) for c, r in rules.items()]


@pytest.mark.parametrize("audit", RUNNABLE, ids=[a.id for a in RUNNABLE])
def test_the_workbook_names_departments_as_the_report_does_and_keeps_the_key(deck_runs, audit):
    cases = Workbook(_out(deck_runs, audit) / "case_list.xlsx").rows("Cases")
    keyed = [r for r in cases if r["Ordering department key"]]
    assert keyed
    for r in keyed:
        assert r["Ordering department"] == department_name(r["Ordering department key"], {}), r


@pytest.mark.parametrize("audit", RUNNABLE, ids=[a.id for a in RUNNABLE])
def test_the_workbook_shows_study_types_in_words_and_keeps_the_key(deck_runs, audit):
    cases = Workbook(_out(deck_runs, audit) / "case_list.xlsx").rows("Cases")
    typed = [r for r in cases if r["Study type key"]]
    assert typed and any("_" in r["Study type key"] for r in typed)
    labels = audit.manifest["report"].get("labels", {})
    for r in typed:
        assert r["Study type"] == label(r["Study type key"], labels) and "_" not in r["Study type"], r


@pytest.mark.parametrize("audit", RUNNABLE, ids=[a.id for a in RUNNABLE])
def test_every_study_type_the_audit_reads_has_words(audit):
    """Each study type an audit reads (its [code_map] study_types and its code_map.csv's) is labelled: unlabelled, the
    case list and the workbook printed "dsm" and "cisternography" in lower case beside "MRI spine" (2025-10's DSM
    review finding); a site's local map brings the types no CPT code has."""
    code_map = audit.folder / "code_map.csv"  # optional (docs/AUDITS.md): an audit may read the others' maps alone
    shipped = pl.read_csv(code_map, infer_schema=False)["study_type"].unique().to_list() if code_map.is_file() else []
    labels = audit.manifest["report"].get("labels", {})
    assert sorted(t for t in {*audit.study_types, *shipped} if t not in labels) == []


def test_a_workbook_header_two_audits_share_names_the_same_column():
    """The committee reads both audits' workbooks side by side, so one header means one thing in both: "Episode" was
    the low back pain workbook's case (a patient's back-pain episode) and the CSF-leak workbook's imaging-episode
    number within a case."""
    columns: dict[str, set[str]] = {}
    for audit in RUNNABLE:
        for column, spec in audit.manifest["report"].get("columns", {}).items():
            columns.setdefault(spec[0], set()).add(column)
    assert {header: sorted(named) for header, named in columns.items() if len(named) > 1} == {}
    # and the CSF-leak methods define the imaging episode by the word its workbook heads the number with
    leak = next(a for a in RUNNABLE if a.id == "csf_leak")
    header = leak.manifest["report"]["columns"]["episode_number"][0]
    assert f"<strong>{header}</strong>:" in (leak.report_dir / "definitions.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("audit", [a for a in RUNNABLE if a.manifest["report"].get("label_columns")], ids=lambda a: a.id)
def test_the_workbook_shows_the_audits_label_columns_in_words_and_keeps_the_keys(deck_runs, audit):
    book = Workbook(_out(deck_runs, audit) / "case_list.xlsx")
    header = {c.header: name for name, c in book_columns(audit).items()}
    labels = audit.manifest["report"].get("labels", {})
    cases = book.rows("Cases")
    for column in audit.manifest["report"]["label_columns"]:
        shown = next(h for h, name in header.items() if name == column)
        keyed = [r for r in cases if r[f"{shown} key"]]
        assert keyed and any(r[shown] != r[f"{shown} key"] for r in keyed), column  # words, not the keys again
        for r in keyed:
            assert r[shown] == "; ".join(label(k, labels) for k in r[f"{shown} key"].split("|")), r
    # a key column's note says where its keys come from: a red-flag group or a modality is no extract's value
    cells = book.cells("Explanation")
    notes = {c["text"]: cells[(i, 1)]["text"] for (i, j), c in cells.items() if j == 0}
    keys = [f"{h} key" for h, name in header.items() if name in audit.manifest["report"]["label_columns"]]
    said = "the key as the data outputs (audited_orders.csv) hold it (filter on it)."
    assert keys and all(notes[k].endswith(said) for k in keys), {k: notes.get(k) for k in keys}


def book_columns(audit) -> dict:
    return workbook.case_columns(audit.manifest["report"].get("columns"))


def test_department_columns_show_the_display_name_and_keep_the_key_beside():
    cases = pl.DataFrame({"ordering_department": ["primary_care", None, "ICU"], "case_department": ["icu"] * 3})
    frame, known = workbook.with_display_names(cases, workbook.CASE_COLUMNS, {"ICU": "Intensive care"})
    assert frame["ordering_department"].to_list() == ["Primary Care", "(not recorded)", "Intensive care"]
    assert frame["ordering_department_key"].to_list() == ["primary_care", None, "ICU"]
    assert frame["case_department"].to_list() == ["Icu"] * 3 and frame["case_department_key"].to_list() == ["icu"] * 3
    assert known["ordering_department_key"].header == "Ordering department key"
    assert list(known)[-2:] == ["ordering_department_key", "case_department_key"]  # after the others


def test_a_sentence_names_the_audits_keys_in_words_with_a_fallback():
    labels = {"outside_window": "Placed outside the audit window", "cancelled": "Order cancelled", "hiv": "HIV"}
    assert in_words("Excluded: outside_window", labels) == "Excluded: Placed outside the audit window"
    assert in_words("Excluded: cancelled", labels) == "Excluded: Order cancelled"
    assert in_words("Not evaluable: mystery_code", labels) == "Not evaluable: mystery code"  # unknown: underscores as spaces
    assert in_words("Complicated: red flag hiv", labels) == "Complicated: red flag HIV"
    assert in_words("Low back pain diagnoses (lbp_uncomplicated) in the period", {}) == (
        "Low back pain diagnoses (lbp uncomplicated) in the period"
    )
    for plain in ("Cases: patients", "Index procedures (lumbar, can puncture the dura)", "Under 18 at the index date"):
        assert in_words(plain, labels) == plain


def test_an_audit_section_prints_recorded_values_by_the_manifests_labels():
    label_of = helpers(20, {"pencil_point": "Pencil-point"})["label_of"]
    assert [label_of(v) for v in ("pencil_point", "lateral_decubitus", "22", 22, None)] == [
        "Pencil-point",
        "lateral decubitus",
        "22",
        "22",
        "(not recorded)",
    ]


@pytest.mark.parametrize("audit", RUNNABLE, ids=[a.id for a in RUNNABLE])
def test_attrition_names_reasons_by_their_labels_and_its_data_output_keeps_the_codes(deck_runs, audit):
    rules = _rules(audit)
    out = _out(deck_runs, audit)
    page = (out / "report.html").read_text(encoding="utf-8")
    start = page.index('<section id="attrition">')
    rows = re.findall(r'<tr class="(?:step|exclusion)">(.*?)</tr>', page[start : page.index("</section>", start)], re.S)
    steps = [html.unescape(re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)[1]).removeprefix("− ") for r in rows]
    assert steps
    assert not [s for s in steps if re.search(r"\b[a-z0-9]+_[a-z0-9_]+\b", s)], steps
    excluded = [c for c, r in rules.items() if r["verdict"] in ("excluded", "not_evaluable")]
    assert {
        f"{'Excluded' if rules[c]['verdict'] == 'excluded' else 'Not evaluable'}: {rules[c]['label']}" for c in excluded
    } <= set(steps)
    data = (out / "attrition.csv").read_text(encoding="utf-8")
    assert all(f"Excluded: {c}," in data for c in excluded if rules[c]["verdict"] == "excluded")


def test_rule_labels_and_explanations_say_the_windows_in_force(deck_runs, tmp_path):
    """A site that sets premature_hours = 48 and early_imaging_days = 21 reads 48 hours and 21 days in every rule
    label and explanation (the reasons table, the Methods' rules, the workbook's Rules sheet and Reasons, the
    audited orders' explanation), as the headline labels above them say: rules.csv's were fixed text, so the
    report counted orders under 48 hours as 'Imaging within 72 hours of the procedure'."""
    from conftest import run_cli

    from pipeline.deck import SITE_TIMEZONE, write_deck_input

    config, out = tmp_path / "site.toml", tmp_path / "out"
    config.write_text(
        "[audits.csf_leak]\npremature_hours = 48\naudit_window_days = 35\n[audits.low_back_pain]\nearly_imaging_days = 21\n"
    )
    write_deck_input(tmp_path / "in", deck_runs["files"])
    args = ["run", "--input", tmp_path / "in", "--out", out, "--config", config, "--no-validate"]
    result = run_cli(*args, "--site-timezone", SITE_TIMEZONE)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = {
        "csf_leak": {
            "premature": ("Imaging within 48 hours of the procedure", "Imaging was ordered less than 48 hours after"),
            "outside_window": ("Placed outside the audit window", "more than 35 days after it"),
            "mri_complete_spine_wwo": ("MRI of the complete spine without and with contrast", "ordered 48 hours or more after"),
        },
        "low_back_pain": {
            "early_imaging": ("Lumbar imaging within 21 days of the diagnosis", "ordered within 21 days of a new"),
            "after_conservative_period": ("Lumbar imaging after 21 days of conservative care", "after day 21 and by day 42"),
        },
    }
    for audit_id, reasons in expected.items():
        folder = out / audit_id
        report = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", (folder / "report.html").read_text("utf-8"))))
        for label_words, explained in reasons.values():
            assert label_words in report and explained in report, (audit_id, label_words)  # the Methods' rules table
        if audit_id == "csf_leak":  # a citation of the audit's own definition names its window
            assert "audited orders are placed from the index procedure to 35 days after it" in report
        # the defaults' words gone (the citations keep their sources' own: HEDIS counts 28 days)
        for default in ("Imaging within 72 hours", "less than 72 hours after", "Lumbar imaging within 28", "ordered within 28"):
            assert default not in report, (audit_id, default)
        assert "{premature_hours}" not in report and "{early_imaging_days}" not in report, audit_id
        rules = {r["Reason code"]: r for r in Workbook(folder / "case_list.xlsx").rows("Rules")}
        cases = Workbook(folder / "case_list.xlsx").rows("Cases")
        orders = pl.read_csv(folder / "audited_orders.csv", infer_schema=False)
        for code, (label_words, explained) in reasons.items():
            assert rules[code]["Reason"] == label_words and explained in rules[code]["Explanation"], rules[code]
            fired = [r for r in cases if code in (r["Reason codes"] or "").split("|")]
            assert fired and all(label_words in r["Reasons"] for r in fired), code
            said = orders.filter(pl.col("reasons").str.contains(code, literal=True))["explanation"].to_list()
            assert said and all(explained in e for e in said), code
