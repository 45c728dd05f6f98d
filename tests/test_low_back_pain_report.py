"""The low back pain audit's report on the decks' combined run: its own sections (the HEDIS-style
episode rate, imaging by modality) count what cases.csv and audited_orders.csv hold, and the
attrition prints in the order of attrition.csv (step, then the exclusions that left it)."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from pipeline import audits
from pipeline.report import workbook
from pipeline.report.audit_sections import status_texts
from pipeline.report.names import in_words
from pipeline.report.spec import ReportSpec
from pipeline.report.templates import make_env

AUDIT = "low_back_pain"
AUDIT_DIR = Path(__file__).resolve().parents[1] / "audits" / AUDIT


def _folder(deck_runs) -> Path:
    return Path(deck_runs["runs"]["combined"]["out"]) / AUDIT


def _csv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False).fill_null("")


def _section(html: str, heading: str) -> str:
    start = html.index(heading)
    return html[start : html.index("<h2", start + 1)]


def _cells(row_html: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row_html, re.S)]


def test_episode_rate_section_counts_the_episodes(deck_runs):
    folder = _folder(deck_runs)
    cases = _csv(folder / "cases.csv")
    outcome = dict(cases.group_by("outcome").len().iter_rows())
    html = (folder / "report.html").read_text(encoding="utf-8")
    section = _section(html, "<h2>Episodes without lumbar imaging in the first 28 days (HEDIS-style rate)")
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", section, re.S) if "All episodes</th><td" in r.replace("\n", ""))
    cells = _cells(row)
    n, d = outcome.get("no_early_imaging", 0), outcome.get("no_early_imaging", 0) + outcome.get("early_imaging", 0)
    assert cells[1:3] == [str(n), str(d)], cells
    assert cells[-4:] == [str(outcome.get(k, 0)) for k in ("early_imaging", "not_evaluable", "excluded")] + [str(cases.height)]
    assert "Setting of the index diagnosis" in section  # the combined deck's feed has the setting column


def test_by_modality_section_counts_the_orders(deck_runs):
    folder = _folder(deck_runs)
    orders = _csv(folder / "audited_orders.csv")
    html = (folder / "report.html").read_text(encoding="utf-8")
    section = _section(html, "Lumbar imaging by modality")
    rows = {c[0]: c for c in (_cells(r) for r in re.findall(r"<tr>(.*?)</tr>", section, re.S)) if c and c[0] != "Modality"}
    for modality, label in (("XR", "X-ray"), ("CT", "CT"), ("MR", "MRI"), ("", "Unmapped code")):
        mine = orders.filter(pl.col("modality") == modality)
        assert rows[label][1] == str(mine.height), (label, rows[label])
        assert rows[label][2] == str(mine.filter(pl.col("verdict") == "excluded").height)
        early = mine.filter(pl.col("verdict") == "inappropriate").height
        judged = mine.filter(pl.col("verdict").is_in(["appropriate", "inappropriate"])).height
        if judged:
            assert rows[label][4:6] == [str(early), str(judged)], (label, rows[label])


def test_attrition_prints_in_the_marts_order(deck_runs):
    folder = _folder(deck_runs)
    audit = deck_runs["audits"][AUDIT]
    # each step as its data row says it, the keys it names in words (a reason by its rules.csv label)
    labels = {**{r["reason_code"]: r["label"] for r in audits.rules_in_force(audit)}, **audit.manifest["report"]["labels"]}
    expected = [in_words(r["step"], labels) for r in _csv(folder / "attrition.csv").iter_rows(named=True)]
    html = (folder / "report.html").read_text(encoding="utf-8")
    table = html[html.index('<table class="attrition">') :]
    table = table[: table.index("</table>")]
    printed = [_cells(r)[1].removeprefix("− ") for r in re.findall(r'<tr class="(?:step|exclusion)">(.*?)</tr>', table, re.S)]
    assert printed == expected


def test_every_red_flag_group_is_printed_in_a_physicians_words(deck_runs):
    """Each red-flag group the audit can give (a value set red_flag_<group>) has a label: the attrition printed
    'Complicated: red flag neurological', the workbook's Red flags 'neurological', where the other groups read
    'IV drug use' or 'HIV'."""
    audit = deck_runs["audits"][AUDIT]
    labels = audit.manifest["report"]["labels"]
    value_sets = pl.read_csv(audit.value_sets_csv, infer_schema=False)["value_set"].unique().to_list()
    groups = sorted(v.removeprefix("red_flag_") for v in value_sets if v.startswith("red_flag_"))
    assert len(groups) == 11 and not [g for g in groups if g not in labels], groups
    html = (_folder(deck_runs) / "report.html").read_text(encoding="utf-8")
    table = html[html.index('<table class="attrition">') :]
    printed = re.findall(r"Complicated: red flag ([^<]*)</td>", table[: table.index("</table>")])
    assert "neurological impairment" in printed, printed  # the deck's neurological window
    assert set(printed) <= {labels[g] for g in groups}, printed  # every group in words, none as its key


def test_who_the_numbers_belong_to_has_no_review_column_for_an_audit_without_review(deck_runs):
    """The low back pain audit gives no review verdict: its department tables (report, department pages, index)
    printed a review column of zeros beside 'inappropriate'; the CSF-leak audit's keep theirs."""
    out = Path(deck_runs["runs"]["combined"]["out"])
    for audit_id, review in (("csf_leak", True), (AUDIT, False)):
        folder = out / audit_id
        pages = [folder / "report.html", folder / "index.html", *sorted((folder / "departments").glob("*.html"))]
        for page in pages:
            text = page.read_text(encoding="utf-8")
            table = text[text.index('<table class="attribution') :]
            head = _cells(table[: table.index("</thead>")])
            assert head[:4] == ["Department", "Orders placed", "of which evaluated", "inappropriate"], (page, head)
            assert ("review" in head) == review, (page, head)
            rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table[table.index("<tbody>") : table.index("</table>")], re.S)
            assert rows and all(len(_cells(r)) == len(head) for r in rows), page


def test_case_list_workbook_shows_each_column_once(deck_runs):
    """Both audits' workbooks: a column the case's side gives (id, date) is not repeated as <name>_1."""
    from xlsx_xml import Workbook

    for audit_id in ("csf_leak", AUDIT):
        header = [r for r in Workbook(Path(deck_runs["runs"]["combined"]["out"]) / audit_id / "case_list.xlsx").rows("Cases")[:1]]
        names = list(header[0]) if header else []
        assert names and not [n for n in names if n and re.search(r"_\d+$", n)], (audit_id, names)
        assert len(names) == len(set(names)), (audit_id, names)


def test_flagged_episodes_say_the_day_after_the_index_date(deck_runs):
    """The case list counts days as the audit does (day 0 = the index date), and says so."""
    from xlsx_xml import Workbook

    folder = _folder(deck_runs)
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "Day 0 is the site-local date of the index diagnosis; orders on days 0-42 are audited, and those on days 0-28" in html
    early = _csv(folder / "audited_orders.csv").filter(pl.col("verdict") == "inappropriate")
    flagged = _section(html, "Flagged episodes for chart review")  # the audit's word for a case, as everywhere
    shown = [d for d in early["days_since_index"].unique().to_list() if f"day {d}<" in flagged]
    assert shown, "no flagged order shows its day after the index date"
    # the column is headed as the workbook heads the same day ('Day'), not 'After index'
    table = flagged[flagged.index('<table class="cases">') :]
    head = _cells(table[: table.index("</thead>")])
    workbook = list(Workbook(folder / "case_list.xlsx").rows("Cases")[0])
    assert head[3] == "Day" and "Day" in workbook, head


def test_department_table_splits_only_the_order_measures(deck_runs):
    """An episode belongs to no department (no case_department): the department table splits the
    order-level headline measure only; the episode rate stays hospital-wide, in the headline."""
    html = (_folder(deck_runs) / "report.html").read_text(encoding="utf-8")
    table = _section(html, "Departments, ")
    table = table[table.index('<table class="groups') : table.index("</table>")]
    assert "Lumbar imaging orders placed in the first 28 days" in table
    assert "Episodes without lumbar imaging" not in table and "no denominator" not in table
    assert "episode measures are hospital-wide" in _section(html, "Departments, ")
    csf = (Path(deck_runs["runs"]["combined"]["out"]) / "csf_leak" / "report.html").read_text(encoding="utf-8")
    csf_table = _section(csf, "Departments, ")
    assert "Leak cases whose first imaging was the right study" in csf_table[csf_table.index('<table class="groups') :]


def test_who_the_numbers_belong_to_counts_the_flagged_episodes_no_department_holds(deck_runs):
    """An episode belongs to no department (the diagnoses feed names none), so its flagged episodes are on the
    'Not attributed' row, and the hospital row counts every flagged episode (it summed the departments' zeros)."""
    folder = _folder(deck_runs)
    orders, cases = _csv(folder / "audited_orders.csv"), _csv(folder / "cases.csv")
    flagged = orders.filter(pl.col("verdict").is_in(["inappropriate", "review"]))["case_id"].n_unique()
    assert flagged > 0
    html = (folder / "report.html").read_text(encoding="utf-8")
    table = html[html.index('<table class="attribution') :]
    table = table[: table.index("</table>")]
    rows = {c[0]: c for c in (_cells(r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)) if c}
    # the last two columns, episodes attributed and flagged (no review column: the audit has no review verdict)
    # named as what it is: the audit gives an episode no department (it read "Not attributed to a department" under
    # "Episodes attributed", beside a flagged list grouped by the orders' departments: the committee review)
    hospital_wide = "Hospital-wide: the audit gives its episodes no department (their orders' departments are above)"
    assert rows[hospital_wide][-2:] == [str(cases.height), str(flagged)]
    assert rows["Hospital"][-2:] == [str(cases.height), str(flagged)]
    # a department holds no episode: its cells say so with "–" (a 0 read as "this department had no episodes")
    departments = [c for name, c in rows.items() if name not in ("Department", hospital_wide, "Hospital")]
    assert departments and all(c[-2:] == ["–", "–"] for c in departments)
    # the audit configures no second view: no column of zeros for one, in the report or its index page
    assert "second view" not in table
    index = (folder / "index.html").read_text(encoding="utf-8")
    assert '<table class="attribution' in index and "second view" not in index
    csf = (folder.parent / "csf_leak" / "report.html").read_text(encoding="utf-8")
    assert "Cases, second view</th>" in csf


def test_site_index_fills_the_measure_labels(deck_runs):
    """The site index names each audit's headline measures as its report does: parameters filled in."""
    index = (Path(deck_runs["runs"]["combined"]["out"]) / "index.html").read_text(encoding="utf-8")
    assert "Early imaging for uncomplicated low back pain" in index
    assert "Episodes without lumbar imaging in the first 28 days (HEDIS-style rate)" in index
    assert "Premature imaging (&lt; 72 h)" in index and "{premature_hours}" not in index


def test_a_month_stays_provisional_for_the_audit_window(deck_runs):
    # an episode indexed on a month's last day can gain lumbar imaging until day 42: not final before then
    import json

    info = json.loads((_folder(deck_runs) / "run.json").read_text())
    assert info["maturity"]["horizon_days"] == 42.0
    period = info["status"]["maturity"]
    assert period["horizon_days"] == "42"
    assert period["status"] == ("final" if period["final_from"] <= period["data_through"] else "provisional")


def test_a_reason_shares_the_denominator_of_its_verdicts_measure(deck_runs):
    """'Orders that could not be judged' is over all audited orders (the audit's measure, DESIGN.md); its
    reasons (LBP-03 unmapped code, LBP-04 no order date) were over the orders not excluded, the engine's
    default: the headline read 7 / 147 and the reasons 5 / 117 and 2 / 117 on the demo. The report's orders
    by reason, its Methods and every cell of the warehouse's counts (what the feed releases) now agree."""
    import duckdb

    folder = _folder(deck_runs)
    orders = _csv(folder / "audited_orders.csv")
    html = (folder / "report.html").read_text(encoding="utf-8")
    headline = html[html.index('<table class="headline">') :]
    headline = headline[: headline.index("</table>")]
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", headline, re.S) if "could not be judged" in r)
    assert _cells(row)[2:4] == [str(orders.filter(pl.col("verdict") == "not_evaluable").height), str(orders.height)]
    reasons = html[html.index('<table class="reasons">') :]
    reasons = reasons[: reasons.index("</table>")]
    group = reasons[reasons.index('class="group verdict-not_evaluable"') :]
    group = group[: group.index("</tbody>", group.index("<tbody>"))]  # its head's body, then its rows'
    assert f"Not evaluable · N = {orders.height} orders: all audited orders" in re.sub(r"<[^>]+>", "", group)
    rows = [_cells(r) for r in re.findall(r"<tr>(.*?)</tr>", group, re.S)]
    assert {c[0] for c in rows} == {"LBP-03", "LBP-04"}  # the deck fires both
    assert all(c[3] == str(orders.height) for c in rows), rows
    assert "all audited orders for excluded, not evaluable reasons" in html  # Methods names it too
    with duckdb.connect(str(deck_runs["runs"]["combined"]["warehouse"]), read_only=True) as con:
        differ = con.execute(
            """SELECT count(*) FROM low_back_pain__mart_metric_counts AS r
               JOIN low_back_pain__mart_metric_counts AS m USING (period, level, group_key)
               WHERE r.measure_id IN ('reason_unmapped_code', 'reason_missing_time')
                 AND m.measure_id = 'not_evaluable_order_rate' AND r.denominator <> m.denominator"""
        ).fetchone()[0]
    assert differ == 0


def test_workbook_providers_sheet_has_no_column_a_provider_cannot_fill(deck_runs):
    """An episode belongs to no provider (no case_provider), so the low back pain Providers sheet has no columns
    for the episode rate (it had five, empty on every row); the CSF-leak audit's cases do belong to a provider."""
    from xlsx_xml import Workbook

    out = Path(deck_runs["runs"]["combined"]["out"])
    for audit_id, case_measure in (("csf_leak", "Leak cases whose first imaging was the right study"), (AUDIT, None)):
        cells = Workbook(out / audit_id / "case_list.xlsx").cells("Providers")
        width = max(c for _, c in cells) + 1
        header = [cells.get((0, j), {}).get("text") or "" for j in range(width)]
        filled = {j for (i, j), c in cells.items() if i > 0 and (c["text"] or c["number"] is not None)}
        rated = {j for j in range(width) if not header[j].startswith("Low reliability")}  # blank: not low
        assert rated and rated <= filled, (audit_id, [header[j] for j in rated - filled])
        if case_measure:
            assert f"{case_measure}: n" in header
    assert not [h for h in header if h.startswith("Episodes")], header


def test_episode_rate_by_setting_reads_in_words(deck_runs):
    """The setting rows name the setting as the manifest's labels do ('Outpatient', not the feed's 'outpatient'), and
    the note counts the episodes left out of N in agreement with the number (it printed '0 episode(s)')."""
    folder = _folder(deck_runs)
    labels = deck_runs["audits"][AUDIT].manifest["report"]["labels"]
    settings = _csv(folder / "cases.csv")["index_setting"].unique().to_list()
    section = _section(
        (folder / "report.html").read_text(encoding="utf-8"),
        "<h2>Episodes without lumbar imaging in the first 28 days (HEDIS-style rate)",
    )
    table = section[section.index("Setting of the index diagnosis") :]
    shown = [_cells(r)[0] for r in re.findall(r"<tr>(.*?)</tr>", table[: table.index("</table>")], re.S)]
    assert "outpatient" in settings and "Outpatient" in shown, shown
    assert not [s for s in shown if s in labels], shown  # every key with a label is shown by it
    assert "(s)" not in section
    note = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", section))
    assert re.search(r"Not in N: (1 episode|\d+ episodes) whose imaging could not be judged", note), note


def test_methods_and_workbook_name_only_the_verdicts_this_audit_gives(deck_runs):
    """The Methods' verdict list and the workbook's Verdict note come from the audit's own rules: the low back pain
    report explained 'excluded' by the CSF-leak audit's 'red-flag indication, or outside the window' and listed a
    review verdict this audit never gives; each verdict now names the rules that give it."""
    from xlsx_xml import Workbook

    out = Path(deck_runs["runs"]["combined"]["out"])
    for audit_id in ("csf_leak", AUDIT):
        rules = audits.check_rules(deck_runs["audits"][audit_id])
        given: dict[str, list[str]] = {}
        for r in rules:
            given.setdefault(r["verdict"], []).append(r["rule_id"])
        html = (out / audit_id / "report.html").read_text(encoding="utf-8")
        start = html.index("<strong>Verdicts</strong>")
        para = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html[start : html.index("</p>", start)]))
        shown = re.findall(r"(?:: |; )(excluded|not evaluable|inappropriate|review|appropriate), rules? ([A-Z0-9, -]+?) \(", para)
        assert {v.replace(" ", "_"): ids.split(", ") for v, ids in shown} == given, para
        assert "outside the window" not in para and "red-flag indication" not in para, para
        # printed, an id never breaks at its hyphen ('CSF-' at a line's end, '12' on the next)
        assert all(f'<span class="rule-id">{rid}</span>' in html[start:] for ids in given.values() for rid in ids)
        cells = Workbook(out / audit_id / "case_list.xlsx").cells("Explanation")
        note = next(cells[(i, 1)]["text"] for (i, j), c in cells.items() if j == 0 and c["text"] == "Verdict")
        assert ("review" in note) == ("review" in given), note


def test_workbook_modality_reads_as_the_reports_modality_table(deck_runs):
    """The workbook's Modality says X-ray, CT or MRI as the report's imaging by modality does (it printed the code
    map's XR and MR, so a reviewer filtering 'MRI' found nothing); the key stays in 'Modality key' for filters."""
    from xlsx_xml import Workbook

    folder = _folder(deck_runs)
    section = _section((folder / "report.html").read_text(encoding="utf-8"), "Lumbar imaging by modality")
    printed = {c[0] for c in (_cells(r) for r in re.findall(r"<tr>(.*?)</tr>", section, re.S)) if c and c[0] != "Modality"}
    rows = Workbook(folder / "case_list.xlsx").rows("Cases")
    keys = {r["Order"]: r["Modality key"] for r in rows}
    orders = _csv(folder / "audited_orders.csv")
    assert keys == {o: m or None for o, m in orders.select("order_id", "modality").iter_rows()}
    shown = {r["Modality"] or "Unmapped code" for r in rows}
    assert shown == printed and {"X-ray", "CT", "MRI"} <= shown, (shown, printed)


def test_flagged_episodes_by_department_say_whose_they_are(deck_runs):
    """An episode belongs to no department, so the flagged-episodes table groups them by the department that placed
    the flagged order and its header says so: it read 'Department | Flagged episodes' (Orthopedics 5) beside 'Who the
    numbers belong to' (Orthopedics: 0 episodes attributed, 0 flagged). The CSF-leak table's departments are the
    attributed ones, and its counts agree with that table's 'of which flagged'."""
    out = Path(deck_runs["runs"]["combined"]["out"])
    for audit_id, header in (("csf_leak", "Department"), (AUDIT, "Department that placed the flagged order")):
        html = (out / audit_id / "report.html").read_text(encoding="utf-8")
        cases = _section(html, f"Flagged {'cases' if audit_id == 'csf_leak' else 'episodes'} for chart review")
        table = cases[cases.index('<table class="narrow flagged-departments">') :]
        rows = [_cells(r) for r in re.findall(r"<tr>(.*?)</tr>", table[: table.index("</table>")], re.S)]
        assert rows[0][0] == header, rows[0]
        if audit_id == "csf_leak":
            who = html[html.index('<table class="attribution') :]
            who = [_cells(r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", who[: who.index("</table>")], re.S)]
            flagged = {c[0]: c[6] for c in who[1:] if c[0] != "Hospital" and c[6] != "0"}
            assert {c[0]: c[1] for c in rows[1:]} == flagged, (rows, who)


def test_methods_define_the_episode_and_early_imaging(deck_runs):
    """The Methods' Definitions say what an episode, a complicated episode, the audited orders and early imaging are,
    with the parameters in force, as the CSF-leak audit's define its case: they held the time zone and attribution
    only, so a committee member had to find the DESIGN.md to learn what 'early' meant."""
    html = (_folder(deck_runs) / "report.html").read_text(encoding="utf-8")
    start = html.index("<h3>Definitions</h3>")
    defined = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html[start : html.index("</ul>", start)]))
    for words in (
        "Episode: a low back pain diagnosis (not inpatient) with none in the 180 days before, patient aged 18 to 75",
        "Complicated: a red flag (LBP-02) in a diagnosis or an order's indication, from its look-back to day 28 (any time"
        " before: cancer, HIV, organ transplant, ankylosing spondylitis; 90 days: recent trauma; 12 months: IV drug use,"
        " neurological impairment, spinal infection, long-term systemic steroids, osteoporosis or fragility fracture,"
        " palliative care): its orders are excluded.",
        "Audited orders: lumbar imaging (X-ray, CT, MRI) on days 0-42",
        "Early imaging: days 0-28, inappropriate; days 29-42, after the conservative period, appropriate",
        # a committee member met "HEDIS" and "HIV" without their words
        "Abbreviations: HEDIS, the Healthcare Effectiveness Data and Information Set",
        "HIV, human immunodeficiency virus",
    ):
        assert words in defined, (words, defined)


def test_headline_labels_say_the_early_imaging_days_in_force(deck_runs, tmp_path):
    """A site that sets [audits.low_back_pain] early_imaging_days = 21 reads 21 days in every measure label, as in
    the numerators under them: the labels said 'the first 28 days' above 'n: ... on days 0-21'. And the rate is
    'HEDIS-style', as the report's section and the guideline note say (the value sets are a public approximation,
    not NCQA's), not 'the HEDIS rate'."""
    from conftest import run_cli

    from pipeline.deck import SITE_TIMEZONE, write_input

    config, out = tmp_path / "site.toml", tmp_path / "out"
    config.write_text("[audits.low_back_pain]\nearly_imaging_days = 21\n", encoding="utf-8")
    write_input(tmp_path / "in", [f.case for f in deck_runs["files"] if f.audit == AUDIT and not f.separate])
    args = ["run", "--input", tmp_path / "in", "--out", out, "--config", config, "--audit", AUDIT, "--no-validate"]
    result = run_cli(*args, "--site-timezone", SITE_TIMEZONE)
    assert result.returncode == 0, result.stderr[-3000:]
    for page in (out / AUDIT / "report.html", out / AUDIT / "index.html", out / "index.html"):
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8")))
        assert "Episodes without lumbar imaging in the first 21 days (HEDIS-style rate)" in text, page
        assert "Lumbar imaging orders placed in the first 21 days" in text, page
        assert "first 28 days" not in text and "HEDIS rate" not in text, page


def test_attrition_notes_agree_in_number(deck_runs):
    """Both audits' attrition (attrition.csv and the report): '1 of these also carries a later reason', not '1 of
    these also carry' (the demo's and the decks' attrition printed it)."""
    out = Path(deck_runs["runs"]["combined"]["out"])
    notes = " ".join(
        " ".join(_csv(out / audit_id / "attrition.csv").select(pl.concat_str(pl.all(), separator=" ")).to_series())
        + re.sub(r"\s+", " ", (out / audit_id / "report.html").read_text(encoding="utf-8"))
        for audit_id in ("csf_leak", AUDIT)
    )
    assert "1 of these also carries a later reason of this kind" in notes  # the decks have such an exclusion
    assert not re.search(r"\(1 of these also carry\b", notes)


def test_the_attrition_says_episode_where_it_means_one():
    """The attrition's words (its model's text literals, printed in the report and attrition.csv) say "episode": 2026-04's
    report read "a case with several red-flag groups is counted under each" and "days 0-42 of a case" beside the
    episode steps, the CSF-leak audit's word in the other report the committee reads."""
    sql = (AUDIT_DIR / "sql" / "low_back_pain__mart_attrition.sql").read_text(encoding="utf-8")
    literals = re.findall(r"'((?:[^']|'')*)'", re.sub(r"--[^\n]*", "", sql))
    assert [t for t in literals if re.search(r"\bcases?\b", t)] == []
    assert "an episode with several red-flag groups is counted under each" in literals


def test_the_report_says_which_episodes_the_workbook_lists(deck_runs):
    """The workbook lists the audited orders, so only the episodes that have one: the report said "Every episode and
    order, flagged or not, is in case_list.xlsx" and "the workbook lists every episode", and a reviewer looked there in
    vain for the episodes without imaging (the demo month: 16 episodes, 13 of them in the workbook)."""
    from xlsx_xml import Workbook

    folder = _folder(deck_runs)
    listed = {r["Episode"] for r in Workbook(folder / "case_list.xlsx").rows("Cases")}
    episodes = set(_csv(folder / "cases.csv")["case_id"])
    assert listed < episodes  # some episodes have no audited order
    html = re.sub(r"\s+", " ", (folder / "report.html").read_text(encoding="utf-8"))
    assert "Every episode and order, flagged or not, is in" not in html and "the workbook lists every episode." not in html
    assert "Every audited order, flagged or not, is in" in html and "episodes without an audited order are counted" in html


def _look_back_note(
    diagnoses: list[str],
    episodes: list[tuple],
    plain: list | None = None,
    orders_held: tuple = ("2000-01-01", 0),
    declared: str | None = None,
) -> str:
    """The first page's notes on the period (report/period_note.sql and .html) over a warehouse of these local
    diagnosis times and (index date, outcome[, is_window_before_orders]) episodes, with the orders held from
    ``orders_held`` (the first day, the earlier orders[, whether the day is the declared start]: int_orders_held's
    row), as a reader sees them ('' when the notes say nothing); ``plain`` receives their plain words
    (audit_sections.note_texts: run.json, the workbook, the site index). The diagnoses held are the model
    int_diagnoses_held's (through int_feeds_held) over those diagnoses, with ``declared`` as the site's declared
    start (declared_start_date)."""
    import html

    import duckdb

    from pipeline.report.audit_sections import look_back, note_texts, period_note

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TABLE low_back_pain__parameters AS SELECT 'America/New_York' AS site_timezone, 180 AS negative_history_days,"
        " 28 AS early_imaging_days, CAST(? AS DATE) AS declared_start_date",
        [declared],
    )
    con.execute(
        "CREATE TABLE low_back_pain__int_orders_held (orders_held_from DATE, earlier_orders BIGINT, is_declared_start BOOLEAN)"
    )
    con.execute("INSERT INTO low_back_pain__int_orders_held VALUES (?, ?, ?)", [*orders_held, False][:3])
    con.execute("CREATE TABLE stg_diagnoses (recorded_at TIMESTAMPTZ)")
    for d in diagnoses:
        con.execute("INSERT INTO stg_diagnoses VALUES (timezone('America/New_York', CAST(? AS TIMESTAMP)))", [d])
    con.execute("CREATE TABLE stg_imaging_orders (ordered_at TIMESTAMPTZ)")  # the orders' row is given (orders_held)
    for model in ("low_back_pain__int_feeds_held", "low_back_pain__int_diagnoses_held"):
        con.execute(f"CREATE TABLE {model} AS {(AUDIT_DIR / 'sql' / f'{model}.sql').read_text(encoding='utf-8')}")
    con.execute(
        "CREATE TABLE low_back_pain__mart_cases (index_date DATE, outcome VARCHAR, is_window_before_orders BOOLEAN,"
        " is_complicated BOOLEAN)"
    )
    for date, outcome, *before in episodes:
        row = [date, outcome, bool(before and before[0]), outcome == "excluded"]
        con.execute("INSERT INTO low_back_pain__mart_cases VALUES (?, ?, ?, ?)", row)
    spec = ReportSpec.of(next(a for a in audits.discover() if a.id == AUDIT))
    note, env = period_note(con, spec, look_back(con, spec) or {}), make_env(spec.report_dir)
    text = env.get_template(note["template"]).render(note=note)
    if plain is not None:
        plain += note_texts(env, note)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def test_the_first_page_says_when_the_look_back_reaches_before_the_diagnoses_held():
    """An episode is new when the 180 days before it hold no low back pain diagnosis; in the first months of an
    extract those days reach before the data, so 'new' cannot be verified: the first page says so, as it says
    'provisional' at the other end. The diagnoses are complete from the first month with half as many as the
    busiest (a few older rows are history, not a record): from 2024-07-01, so verified from 2024-12-28."""
    full = [f"2024-{m:02d}-{d:02d} 10:00" for m in range(7, 13) for d in range(1, 29, 3)]  # 10 a month
    old = ["2022-10-25 09:00"]
    judged = [("2024-07-05", "early_imaging"), ("2024-12-27", "no_early_imaging"), ("2024-12-28", "no_early_imaging")]
    plain: list = []
    assert _look_back_note(full + old, [*judged, ("2024-08-01", "excluded")], plain) == (
        "New episodes not verified: 3 of the 4 episodes (2 of the 3 episodes judged). An episode is new when the patient"
        " has no low back pain diagnosis in the 180 days before it. The diagnoses held are complete from 2024-07-01"
        " (1 diagnosis before then: scattered history, not a complete record), so for an episode indexed before"
        " 2024-12-28 those days reach before the data: it may continue an episode that began earlier, and would then be"
        " no case. Episodes indexed from 2024-12-28 on are verified; loading earlier diagnoses and running the period"
        " again settles the others."
    )
    # the same words where no page is: the workbook's Explanation under the period's status, the site index its title
    assert [n["title"] for n in plain] == ["New episodes not verified: 3 of the 4 episodes"]
    assert plain[0]["text"].startswith("New episodes not verified: 3 of the 4 episodes (2 of the 3 episodes judged). An")
    assert plain[0]["text"].endswith("running the period again settles the others.")
    maturity = {"status": "final", "data_through": "2026-06-30", "final_from": "2026-06-12", "last_index_date": "2026-04-30"}
    final = {"status": {"maturity": maturity | {"horizon_days": "42"}}, "period_notes": plain}
    said = status_texts(make_env(), final, ReportSpec.of(next(a for a in audits.discover() if a.id == AUDIT)))
    assert workbook._period_status(final, said) == [
        (
            "Period status",
            "Final: the loaded data runs through 2026-06-30, past 2026-06-11, the last day of the audit's 42-day windows"
            " from the period's last index date, 2026-04-30.",
        ),
        ("Period status", plain[0]["text"]),
    ]
    one = _look_back_note(full + old * 2, [("2024-07-05", "early_imaging")])
    assert one.startswith(
        "New episodes not verified: 1 of the 1 episode (1 of the 1 episode judged). An episode is new when the patient"
    )
    assert "from 2024-07-01 (2 diagnoses before then: scattered history" in one
    # no older rows: nothing said of them; an episode excluded: none judged
    none_judged = _look_back_note(full, [("2024-07-05", "excluded")])
    assert none_judged.startswith("New episodes not verified: 1 of the 1 episode (0 of the 0 episodes judged).")
    assert "complete from 2024-07-01, so for an episode indexed before 2024-12-28" in none_judged
    # months are site-local: 23:30 on 30 June in New York (03:30 UTC on 1 July) is a June diagnosis, before the data
    late_june = _look_back_note([*full, "2024-06-30 23:30"], [("2024-07-05", "early_imaging")])
    assert "complete from 2024-07-01 (1 diagnosis before then: scattered history" in late_june
    # a month with half as many as the busiest is complete: its look-back is covered
    assert _look_back_note(full + ["2024-01-10 10:00"] * 5, [("2024-07-05", "early_imaging")]) == ""
    # every episode of the period past the look-back's reach (or none at all): nothing to say
    assert _look_back_note(full, [("2024-12-28", "early_imaging"), ("2025-01-02", "excluded")]) == ""
    assert _look_back_note(full, []) == ""
    # no diagnosis held at all (so no episode): verified_from.sql's row is NULL dates, the note binds them and says nothing
    assert _look_back_note([], []) == ""


def test_the_first_page_says_how_many_episodes_are_indexed_before_the_orders_held():
    """An orders extract that starts after the diagnoses extract: an uncomplicated episode indexed before the orders
    held could have had early imaging that no order held shows, so it is in no rate's N (DESIGN.md section 8). The
    first page says how many, from which date the orders are held and how many older orders are not a record; the
    site index and the workbook take its title and words. A complicated episode indexed before then is excluded
    anyway, and is not counted here."""
    full = [f"2024-{m:02d}-{d:02d} 10:00" for m in range(1, 13) for d in range(1, 29, 3)]  # look-back note: none
    episodes = [
        ("2024-09-30", "not_evaluable", True),
        ("2024-09-20", "excluded", True),
        ("2024-10-01", "no_early_imaging"),
        ("2024-10-01", "early_imaging"),
    ]
    plain: list = []
    said = _look_back_note(full, episodes, plain, orders_held=("2024-10-01", 4))
    assert said == (
        "Early imaging not judged: 1 of the 4 episodes (uncomplicated, indexed before the imaging orders held). The"
        " imaging orders held are complete from 2024-10-01 (4 orders before then: scattered rows, not a complete"
        " record), so lumbar imaging on days 0–28 of an episode indexed before then could lie before the data: such an"
        " episode is in no rate's denominator (counted as not evaluable, named in the attrition), not counted as an"
        " episode without early imaging. Loading earlier orders and running the period again judges them."
    )
    assert [n["title"] for n in plain] == ["Early imaging not judged: 1 of the 4 episodes"]
    one_older = _look_back_note(full, episodes, orders_held=("2024-10-01", 1))
    assert "(1 order before then: scattered rows" in one_older
    assert "complete from 2024-10-01, so lumbar imaging" in _look_back_note(full, episodes, orders_held=("2024-10-01", 0))
    # no dated order held at all: every episode's window is before the orders
    none = _look_back_note(full, [("2024-10-01", "not_evaluable", True)], orders_held=(None, 0))
    assert "No dated imaging order is held, so no episode's early imaging can be seen" in none
    # every uncomplicated episode within the orders held: nothing to say
    assert _look_back_note(full, episodes[1:], orders_held=("2024-10-01", 4)) == ""
    # both notes: the look-back's first, then the orders'
    both: list = []
    _look_back_note(full[60:], [("2024-09-30", "not_evaluable", True)], both, orders_held=("2024-10-01", 0))
    assert [n["title"] for n in both] == [
        "New episodes not verified: 1 of the 1 episode",
        "Early imaging not judged: 1 of the 1 episode",
    ]


def test_a_declared_start_is_where_the_first_page_says_the_data_is_held_from():
    """A site whose diagnoses more than double over its data (5 a month July to September, 12 from October: a hospital
    joining) has its first months read as scattered history by the half-the-busiest-month guess. When the site declares
    where its extract starts ([extract] data_since: declared_start_date), the diagnoses are held from that site-local
    day, so the look-back is verified 180 days later; the rows before it (23:30 on 14 July in New York is 03:30 UTC on
    the 15th: a day before) are named as rows before the declared start, and the orders' note says the same of its
    day (int_orders_held's is_declared_start)."""
    low = [f"2024-{m:02d}-{d:02d} 10:00" for m in (7, 8, 9) for d in range(1, 26, 5)]  # 5 a month
    high = [f"2024-{m:02d}-{d:02d} 10:00" for m in (10, 11, 12) for d in range(1, 25, 2)]  # 12 a month
    episodes = [("2024-07-14", "not_evaluable", True), ("2024-07-15", "no_early_imaging")]
    guessed = _look_back_note(low + high, episodes, orders_held=("2024-10-01", 9))
    assert "complete from 2024-10-01 (15 diagnoses before then: scattered history, not a complete record), so for an" in guessed
    assert "indexed before 2025-03-30 those days" in guessed and "declare" not in guessed
    plain: list = []
    declared = _look_back_note(
        [*low, *high, "2024-07-14 23:30"], episodes, plain, orders_held=("2024-07-15", 2, True), declared="2024-07-15"
    )
    assert [n["title"] for n in plain] == [
        "New episodes not verified: 2 of the 2 episodes",
        "Early imaging not judged: 1 of the 2 episodes",
    ]
    assert plain[0]["text"] == (
        "New episodes not verified: 2 of the 2 episodes (1 of the 1 episode judged). An episode is new when the patient"
        " has no low back pain diagnosis in the 180 days before it. The diagnoses held are complete from 2024-07-15, the"
        " start the site declares for its extract (4 diagnoses before then: rows from before the declared start, not a"
        " complete record), so for an episode indexed before 2025-01-11 those days reach before the data: it may"
        " continue an episode that began earlier, and would then be no case. Episodes indexed from 2025-01-11 on are"
        " verified; loading earlier diagnoses with the declared start moved back and running the period again settles"
        " the others."
    )
    assert plain[1]["text"] == (
        "Early imaging not judged: 1 of the 2 episodes (uncomplicated, indexed before the imaging orders held). The"
        " imaging orders held are complete from 2024-07-15, the start the site declares for its extract (2 orders before"
        " then: rows from before the declared start, not a complete record), so lumbar imaging on days 0–28 of an"
        " episode indexed before then could lie before the data: such an episode is in no rate's denominator (counted"
        " as not evaluable, named in the attrition), not counted as an episode without early imaging. Loading earlier"
        " orders with the declared start moved back and running the period again judges them."
    )
    assert declared == " ".join(n["text"] for n in plain)
    # a declared day with no older row: nothing said of earlier rows
    assert "complete from 2024-07-01, the start the site declares for its extract, so for" in _look_back_note(
        low + high, episodes, declared="2024-07-01"
    )


def test_the_episode_rate_names_the_episodes_indexed_before_the_orders_held(deck_runs):
    """The episode rate's note says what is not in N: the episodes indexed before the orders held apart from those an
    unjudged order could hide (the deck file imaging_window_before_orders_held, on its own input: orders held from
    2024-10-01; a, c and d before, e complicated; b and f judged, 1 / 2); the attrition counts them in a step of
    their own, with the date and the older orders, and the chain of episodes adds up."""
    run = deck_runs["runs"]["low_back_pain/imaging_window_before_orders_held"]
    folder = Path(run["out"]) / AUDIT
    html = (folder / "report.html").read_text(encoding="utf-8")
    section = _words(_section(html, "<h2>Episodes without lumbar imaging in the first 28 days (HEDIS-style rate)"))
    assert (
        "Not in N: 0 episodes whose imaging could not be judged (an unmapped code or an order without a date that could"
        " be early), 3 episodes indexed before the imaging orders held (from 2024-10-01), whose imaging on days 0–28"
        " could lie before the data and not be seen (counted as not evaluable), and 1 complicated episode"
    ) in section
    assert "Early imaging not judged: 3 of the 6 episodes" in _words(html)
    rows = pl.read_csv(folder / "attrition.csv").fill_null("").to_dicts()
    step = {r["step"]: r for r in rows}
    before = step["Imaging window before the orders held"]
    assert (before["count"], before["kind"], before["unit"]) == (3, "exclusion", "episodes")
    assert before["note"].startswith("indexed before 2024-10-01, the first day of the orders held")
    assert "(4 earlier orders are held: scattered rows, not a complete record)" in before["note"]
    uncomplicated = step["Uncomplicated episodes"]["count"]
    covered = next(r for r in rows if r["step"].startswith("Uncomplicated episodes whose imaging window"))
    without = next(r for r in rows if r["step"].startswith("Uncomplicated episodes without audited imaging"))
    imaged = step["Uncomplicated episodes with audited orders"]
    assert (uncomplicated, covered["count"], without["count"], imaged["count"]) == (5, 2, 1, 1)
    assert covered["step_order"] == before["step_order"] + 1 == without["step_order"] == imaged["step_order"] - 1
    cases = _csv(folder / "cases.csv")
    judged = cases.filter(pl.col("outcome").is_in(["no_early_imaging", "early_imaging"]))
    assert (judged.filter(pl.col("outcome") == "no_early_imaging").height, judged.height) == (1, 2)


def _index_diagnoses_note(has_position: bool, has_setting: bool) -> str:
    """The episode rate section's note on which diagnoses start an episode, as a reader reads it."""
    import html

    from pipeline.report.audit_sections import helpers

    spec = ReportSpec.of(next(a for a in audits.discover() if a.id == AUDIT))
    env = make_env(spec.report_dir)
    env.globals.update(helpers(20, spec.labels))
    row = {"group_order": 1, "grouping": "All episodes", "group_key": None, "numerator": 4, "denominator": 13}
    row |= {"early_imaging": 9, "not_evaluable": 0, "before_orders": 0, "excluded": 3, "episodes": 16}
    row |= {"has_position": has_position, "orders_held_from": "2024-07-01"}
    row |= {"has_setting": has_setting, "earliest_diagnosis": "2022-10-25", "earliest_order": "2024-07-01"}
    row |= {"before_data": False, "verified_from": "2023-04-23", "history_days": 180}  # episode_rate.sql's look-back
    page = env.get_template("audit/episode_rate.html").render(
        parameters={"early_imaging_days": 28}, scope={"kind": "hospital"}, section={"rows": [row]}, low=20
    )
    note = page[page.index('<p class="note">Index diagnoses') :]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", note[: note.index("</p>")])).split())


def test_which_diagnoses_start_an_episode_is_said_in_a_clinicians_words():
    """The note said 'any position (the diagnoses feed has no is_principal or diagnosis_rank column)': a column
    name where a clinician reads; it now says what counts first, and the columns only as what the extract would add."""
    red_flags = (
        ' Red flags recorded "any time before" reach back to the earliest rows loaded: diagnoses from 2022-10-25, orders'
        " from 2024-07-01."
    )
    assert _index_diagnoses_note(False, True) == (
        "Index diagnoses: principal or secondary (the extract does not mark which is principal; an is_principal or"
        " diagnosis_rank column in it would keep secondary diagnoses from starting an episode); outpatient, emergency,"
        " observation and telehealth encounters (inpatient ones start no episode)." + red_flags
    )
    assert _index_diagnoses_note(True, False) == (
        "Index diagnoses: the principal diagnosis only (the extract marks which diagnosis is principal); any setting,"
        " inpatient too (the extract has no setting column)." + red_flags
    )


def test_both_audits_print_the_same_review_form(deck_runs):
    """The printed form of each audit's Cases sheet (its print area, A to N) has the same columns in the same places: the
    case, its patient, its date, when the order was placed and how long after the index, the order, study, department,
    verdict and why, then the reviewer's four. The low back pain audit's Day stood before the Order where the CSF-leak
    audit's Time after procedure stood after it, so the two sheets, printed for one meeting, did not line up."""
    from xlsx_xml import Workbook  # noqa: PLC0415

    out = Path(deck_runs["runs"]["combined"]["out"])
    forms = {}
    for audit in ("csf_leak", "low_back_pain"):
        book = Workbook(out / audit / "case_list.xlsx")
        area = re.fullmatch(r"Cases!\$A\$1:\$([A-Z]+)\$\d+", book.defined_names["_xlnm.Print_Area"]).group(1)
        forms[audit] = (area, list(book.rows("Cases")[0])[:14])
    assert forms == {
        "csf_leak": ("N", [
            "Case", "Patient key", "Procedure date", "Ordered (site time)", "Time after procedure", "Order", "Ordered study",
            "Ordering department", "Verdict", "Why (in words)", "Reviewer agrees?", "Reviewer comment", "Reviewer", "Review date",
        ]),
        "low_back_pain": ("N", [
            "Episode", "Patient key", "Index date", "Ordered (site time)", "Day", "Order", "Ordered study",
            "Ordering department", "Verdict", "Why (in words)", "Reviewer agrees?", "Reviewer comment", "Reviewer", "Review date",
        ]),
    }  # fmt: skip


def test_the_printed_review_form_names_the_red_flag_a_reviewer_confirms(deck_runs):
    """An excluded order's Why (in words), a column of the printed form, names its red flags in words, as the CSF-leak
    form's reasons name what each found: the rule's own words said only 'a red flag (for example cancer, ...)', and
    the Red flags column is off the form, among the filter columns."""
    from xlsx_xml import Workbook  # noqa: PLC0415

    book = Workbook(_folder(deck_runs) / "case_list.xlsx")
    rows = book.rows("Cases")
    header = list(rows[0])
    form_end = re.fullmatch(r"Cases!\$A\$1:\$([A-Z]+)\$\d+", book.defined_names["_xlnm.Print_Area"]).group(1)
    assert header.index("Why (in words)") < header.index("Review date") == ord(form_end) - ord("A") < header.index("Red flags")
    labels = deck_runs["audits"][AUDIT].manifest["report"]["labels"]
    flagged = [r for r in rows if r["Red flags"]]
    assert {r["Verdict"] for r in flagged} == {"excluded"} and len(flagged) >= 3
    for r in flagged:
        assert r["Why (in words)"].endswith(f" Red flags: {r['Red flags']}."), r
        assert set(r["Red flags"].split("; ")) <= set(labels.values()), r  # in words, not keys
    assert not [r for r in rows if not r["Red flags"] and "Red flags:" in r["Why (in words)"]]
    # the Explanation sheet says what the Why now ends with
    notes = {c["text"] for c in book.cells("Explanation").values()}
    said = "Then, where the row has any: Red flags (what the reviewer confirms in the chart)."
    assert any(n and n.endswith(said) for n in notes)


def test_a_month_without_episodes_says_so_in_episodes():
    """A month with no low back pain diagnosis: the first page, its headline table and the workbook said "No cases" of
    an audit whose measures count episodes (the CSF-leak audit's word)."""
    import html  # noqa: PLC0415

    from pipeline.resources import reports_dir  # noqa: PLC0415

    spec = ReportSpec.of(next(a for a in audits.discover() if a.id == "low_back_pain"))
    maturity = {"status": "final", "data_through": "2025-12-31", "final_from": "2025-09-12", "last_index_date": "2025-07-31"}
    status = {
        "period": "2025-07",
        "empty": {"data_first": "2024-12-02", "data_last": "2026-01-06", "feeds": "diagnoses and imaging orders"},
        "maturity": maturity | {"horizon_days": "42"},
    }
    banner = make_env().get_template("_status_banner.html").render(status=status, spec=spec)
    said = " ".join(html.unescape(re.sub(r"<[^>]+>", "", banner)).split())
    assert said == (
        "No episodes in 2025-07. The loaded data holds no episode of this period (its diagnoses and imaging orders are"
        " dated 2024-12-02 to 2026-01-06), so there is nothing to audit: the measures below are empty, not failed."
        " Final: the loaded data runs through 2025-12-31, past 2025-09-11, the last day of the audit's 42-day windows from"
        " the period's last index date, 2025-07-31."
    )
    # the workbook's Explanation says the page's notes in its words, the Cases sheet for the measures below
    assert workbook._period_status({"status": status}, status_texts(make_env(), {"status": status}, spec)) == [
        (
            "Period status",
            "No episodes in 2025-07. The loaded data holds no episode of this period (its diagnoses and imaging orders are"
            " dated 2024-12-02 to 2026-01-06), so there is nothing to audit: the Cases sheet is a header row only, not"
            " broken.",
        ),
        ("Period status", said[said.index(" Final: ") + 1 :]),
    ]
    page = (reports_dir() / "report.html").read_text(encoding="utf-8")
    empty = re.search(r'<tr><td colspan="6" class="empty">\{% if scope.kind.*?</td></tr>', page).group(0)
    rows = {kind: make_env().from_string(empty).render(scope={"kind": kind}, spec=spec) for kind in ("hospital", "department")}
    assert rows == {
        "hospital": '<tr><td colspan="6" class="empty">No episode and no audited order in this period.</td></tr>',
        "department": '<tr><td colspan="6" class="empty">No audited orders in this period.</td></tr>',
    }


def test_a_provisional_month_says_its_episodes_can_still_change():
    """The provisional note in the audit's unit: the low back pain report and workbook said "Cases indexed late in the
    period can still gain evidence" of a month whose headline counts episodes (its 2026-06)."""
    import html  # noqa: PLC0415

    spec = ReportSpec.of(next(a for a in audits.discover() if a.id == "low_back_pain"))
    maturity = {"status": "provisional", "data_through": "2026-06-30", "final_from": "2026-08-12"}
    status = {"period": "2026-06", "maturity": maturity | {"horizon_days": "42", "last_index_date": "2026-06-30"}}
    banner = make_env().get_template("_status_banner.html").render(status=status, spec=spec)
    said = " ".join(html.unescape(re.sub(r"<[^>]+>", "", banner)).split())
    assert "Episodes indexed late in the period can still gain evidence" in said and "Cases" not in said, said
    rows = workbook._period_status({"status": status}, status_texts(make_env(), {"status": status}, spec))
    assert rows[0][1].startswith("Provisional. The loaded data runs through 2026-06-30. Episodes indexed late"), rows


def test_a_grouping_with_one_value_is_a_sentence_not_a_second_table():
    """Every episode of the month was outpatient: the table by setting repeated the overall row under another heading (a
    month's one row already was left out). The overall table stays; the single setting is said in words."""
    from pipeline.report.audit_sections import helpers  # noqa: PLC0415

    audit = next(a for a in audits.discover() if a.id == AUDIT)
    counts = {"episodes": 16, "numerator": 4, "denominator": 13, "early_imaging": 9, "not_evaluable": 0, "excluded": 3}
    counts |= {"before_orders": 0}
    feed = {"has_setting": True, "has_position": False, "earliest_diagnosis": "2022-10-25", "earliest_order": "2024-07-01"}
    feed |= {"orders_held_from": "2024-07-01"}
    feed |= {"before_data": False, "verified_from": "2023-04-23", "history_days": 180}
    rows = [
        {"group_order": 1, "grouping": "All episodes", "group_key": "all", **counts, **feed},
        {"group_order": 2, "grouping": "Index month", "group_key": "2026-04", **counts, **feed},
        {"group_order": 3, "grouping": "Setting of the index diagnosis", "group_key": "outpatient", **counts, **feed},
    ]
    page = (
        make_env(audit.report_dir)
        .get_template("audit/episode_rate.html")
        .render(
            section={"rows": rows},
            parameters={"early_imaging_days": 28},
            scope={"kind": "hospital"},
            low=20,
            **helpers(20, audit.manifest["report"]["labels"]),
        )
    )
    assert page.count("<table") == 1 and "All episodes</th>" in page and "Setting of the index diagnosis</th>" not in page
    assert '<p class="note">Every episode\'s setting of the index diagnosis: Outpatient.</p>' in page


def test_the_index_names_an_empty_month_in_each_measures_unit():
    """The audit's index printed "no cases" under the low back pain measures, which count episodes and orders; the site
    index said "no episodes" and "no orders" of the same months."""
    from pipeline.resources import reports_dir  # noqa: PLC0415

    spec = ReportSpec.of(next(a for a in audits.discover() if a.id == AUDIT))
    page = (reports_dir() / "index.html").read_text(encoding="utf-8")
    rows = page[page.index("{% for m in months %}") : page.index("</tbody>", page.index("{% for m in months %}"))]
    months = [{"period": "2025-07", "provisional": False, "cells": [None] * len(spec.trend_measures)}]
    text = make_env().from_string('{% from "_macros.html" import dagger %}' + rows).render(months=months, spec=spec)
    assert [m.unit for m in spec.trend_measures] == ["case", "order"]
    assert re.findall(r"<td>([^<]*)</td>", text) == ["2025-07", "no episodes", "no orders"]


def _position_and_setting_notes(attrition_csv: Path) -> dict[str, str]:
    rows = _csv(attrition_csv).filter(pl.col("step").is_in(["Not the principal diagnosis", "Position not recorded",
                                                             "Inpatient", "Setting not recorded"]))  # fmt: skip
    return dict(rows.select("step", "note").iter_rows())


def test_attrition_says_a_position_or_setting_the_extract_lacks_was_not_checked(deck_runs, small_input, tmp_path):
    """An extract without a position or setting column printed "Not the principal diagnosis 0: the feed marks the
    diagnosis position", beside the methods' "the extract does not mark which is principal": a 0 that read as a check
    that found nothing, where nothing was checked. The deck's extract has both columns; the small one neither."""
    from conftest import run_cli  # noqa: PLC0415

    with_both = _position_and_setting_notes(_folder(deck_runs) / "attrition.csv")
    assert with_both == {
        "Not the principal diagnosis": "the feed marks the diagnosis position; only a principal diagnosis starts an episode",
        "Position not recorded": "the feed has a position column; a diagnosis counted here leaves it empty",
        "Inpatient": "HEDIS counts outpatient-type settings only (outpatient, emergency, observation, telehealth)",
        "Setting not recorded": "the feed has a setting column; a diagnosis counted here leaves it empty",
    }
    out = tmp_path / "out"
    proc = run_cli("run", "--input", small_input, "--out", out, "--warehouse", tmp_path / "wh.duckdb", "--no-validate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _position_and_setting_notes(out / AUDIT / "attrition.csv") == {
        "Not the principal diagnosis": "not checked: the extract has no position column (is_principal or"
        " diagnosis_rank), so a secondary diagnosis starts an episode too",
        "Position not recorded": "not checked: the extract has no position column",
        "Inpatient": "not checked: the extract has no setting column, so an inpatient diagnosis starts an episode too",
        "Setting not recorded": "not checked: the extract has no setting column",
    }
    html = (out / AUDIT / "report.html").read_text(encoding="utf-8")
    assert "not checked: the extract has no position column" in html and "the feed marks the diagnosis" not in html


def test_the_trend_starts_at_the_first_month_whose_look_back_is_in_the_data():
    """first_complete_month is the feed's look_back: a month starting before verified_from is before_data. The trend
    starts there unless the reported month itself is before it (then nothing complete is left to show)."""
    import datetime as dt

    from pipeline.report.sections import first_complete_month, trend_months

    assert first_complete_month(dt.date(2024, 12, 28)) == "2025-01"
    assert first_complete_month(dt.date(2025, 1, 1)) == "2025-01"
    assert first_complete_month(None) is None
    metrics = pl.DataFrame({"period": ["2024-07", "2025-03", "all"]})
    assert trend_months(metrics, "2025-04", 24, complete_from="2025-01") == ["2025-01", "2025-02", "2025-03", "2025-04"]
    assert trend_months(metrics, "2025-04", 24)[0] == "2024-07"
    assert trend_months(metrics, "2024-11", 24, complete_from="2025-01")[0] == "2024-07"  # a before_data month's run
    assert trend_months(metrics, "2025-04", 2, complete_from="2025-01") == ["2025-03", "2025-04"]


def test_the_trend_starts_where_every_feed_has_begun_not_at_the_first_case():
    """The committee review: the CSF-leak trend began at its first case (2024-08), a month after the data began, and
    2024-07, a month of no cases, was left out without a word where a later one (2025-09) was shown. The trend starts
    at the first month every feed of the audit covers whole (``status['feeds_begun']``); months before it (six stray
    procedures of June before the orders began) are not a month of no cases; a window or look-back still bounds it."""
    from pipeline.period_status import build
    from pipeline.report.sections import trend_months

    metrics = pl.DataFrame({"period": ["2024-08", "2025-03", "all"]})
    assert trend_months(metrics, "2025-04", 24, data_from="2024-07")[:2] == ["2024-07", "2024-08"]
    assert trend_months(metrics, "2025-04", 24)[0] == "2024-08"  # without it, the first month with a row
    assert trend_months(metrics, "2025-04", 24, data_from="2024-09")[0] == "2024-08"  # a case before: kept
    assert trend_months(metrics, "2025-04", 24, first="2024-08", data_from="2024-07")[0] == "2024-08"
    assert trend_months(metrics, "2025-04", 24, complete_from="2025-01", data_from="2024-07")[0] == "2025-01"
    per_feed = {"procedures": ("2024-06-01", "2026-06-30"), "imaging_orders": ("2024-07-01", "2026-06-30")}
    spans = {"cases": ("2024-08", "2026-04"), "data": ("2024-06-01", "2026-06-30"), "per_feed": per_feed}
    assert build("csf_leak", "2026-04", {"cases": 4}, None, None, [], spans)["feeds_begun"] == "2024-07-01"
    short = {**spans, "per_feed": {**per_feed, "imaging_orders": (None, None)}}  # a feed without a row: no start
    assert "feeds_begun" not in build("csf_leak", "2026-04", {"cases": 4}, None, None, [], short)


def test_the_day_column_is_centred_apart_from_the_order_id_beside_it(deck_runs):
    """Right-aligned, the Day ("10") ran into the next column's order id in print ("10O00100146")."""
    from xlsx_xml import Workbook  # noqa: PLC0415

    book = Workbook(_folder(deck_runs) / "case_list.xlsx")
    cells = book.cells("Cases")
    header = [cells[(0, j)]["text"] for j in range(max(j for _, j in cells) + 1) if (0, j) in cells]
    day = header.index("Day")
    assert header[day + 1] == "Order"
    days = [c for (i, j), c in cells.items() if j == day and i > 0 and c["number"] is not None]
    assert days and {c["align"] for c in days} == {"center"}


def _first_month_without_orders(d: Path) -> Path:
    """A small extract whose first month of episodes has no audited order, as a site's first extract often has
    (diagnoses from before the first order held): a low back pain episode in 2024-09 imaged never (orders start in
    2024-10), episodes from 2024-11 on with lumbar imaging; and a CSF-leak case in 2024-10 never imaged beside one
    in 2024-12 that is."""
    from conftest import DX_HEADER, ORDER_HEADER, PROC_HEADER, write_csv  # noqa: PLC0415

    write_csv(
        d / "procedures.csv",
        PROC_HEADER,
        [
            ["PR1", "C-1", "2024-10-07 09:00:00", "62323", "Pain clinic", "1970-05-05"],
            ["PR2", "C-2", "2024-12-02 09:00:00", "62322", "Pain clinic", "1980-01-01"],
        ],
    )
    lbp = [("L-1", "2024-09-10"), ("L-2", "2024-11-12"), ("L-3", "2025-01-08"), ("L-4", "2025-02-04"), ("L-5", "2025-03-05")]
    write_csv(
        d / "diagnoses.csv",
        DX_HEADER,
        [["C-1", "G97.1", "2024-10-08 08:00:00"], ["C-2", "G97.1", "2024-12-03 08:00:00"]]
        + [[p, "M54.50", f"{day} 10:00:00"] for p, day in lbp],
    )
    write_csv(
        d / "imaging_orders.csv",
        ORDER_HEADER,
        [
            ["O1", "C-2", "2024-12-04 10:00:00", "72156", "Neurology", "G97.1", "completed"],
            ["O2", "L-2", "2024-11-14 10:00:00", "72100", "Family Medicine", "M54.50", "completed"],  # day 2: early
            ["O3", "L-3", "2025-02-15 10:00:00", "72148", "Family Medicine", "M54.50", "completed"],  # day 38: after
            ["O4", "L-4", "2025-02-06 10:00:00", "72100", "Family Medicine", "M54.50", "completed"],  # day 2: early
            ["O5", "L-5", "2025-03-07 10:00:00", "72100", "Family Medicine", "M54.50", "completed"],  # day 2: early
        ],
    )
    write_csv(d / "patients.csv", ["patient_id", "birth_date"], [[p, "1970-01-01"] for p, _ in lbp])
    return d


def _words(markup: str) -> str:
    import html  # noqa: PLC0415

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def test_the_period_stated_and_every_total_agree_when_a_month_has_episodes_but_no_orders(tmp_path):
    """The metrics counted only the months holding an audited order: an extract whose first month's episode went
    unimaged had its report say 'Headline measures, all months, 2024-11 to 2025-03' and count 1 of 4 episodes without
    early imaging, where the log and the site index said '2024-09 to 2025-03' and the report's own episode-rate table
    counted 2 of 5, with a 2024-09 row. Every place that states the period says the cases' months, and every total of
    the page (the headline, the episode rate's all-episodes row and the sum of its months, the site index, the feed's
    'all') counts the same episodes. The 2024-09 episode is in the period but not judged: its imaging window begins
    before the orders held (from 2024-11-01, the first month of orders), so it is in no rate's N (DESIGN.md section 8),
    in every place alike. The CSF-leak audit's period (a case in 2024-10 never imaged) is said alike, by its feed's
    'all' row too: it said 2024-12 to 2024-12, its first month with a cell, where the report said 2024-10 to 2024-12
    (a case never imaged is in no measure, so the counts are alike; the months with a cell still start in 2024-12)."""
    from conftest import run_cli  # noqa: PLC0415

    from pipeline.months import all_months  # noqa: PLC0415

    out = tmp_path / "out"
    inp = _first_month_without_orders(tmp_path / "in")
    proc = run_cli("run", "--input", inp, "--out", out, "--warehouse", tmp_path / "wh.duckdb", "--no-validate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    site = _words((out / "index.html").read_text(encoding="utf-8"))
    for audit_id in ("csf_leak", AUDIT):
        folder = out / audit_id
        cases = _csv(folder / "cases.csv")
        period = all_months(min(cases["index_month"]), max(cases["index_month"]))
        assert period == ("all months, 2024-10 to 2024-12" if audit_id == "csf_leak" else "all months, 2024-09 to 2025-03")
        assert f"{audit_id}: {period} is" in proc.stderr, proc.stderr[-3000:]  # the log's line on the period
        assert period in site
        html = (folder / "report.html").read_text(encoding="utf-8")
        stated = set(re.findall(r"all months, \d{4}-\d{2} to \d{4}-\d{2}", _words(html)))
        stated |= set(re.findall(r"all months, \d{4}-\d{2} to \d{4}-\d{2}", _words((folder / "index.html").read_text("utf-8"))))
        assert stated == {period}, (audit_id, stated)
        # the feed's 'all' row spans the period the report states, whatever months hold a cell
        feed_all = _csv(folder / "metrics.csv").filter(pl.col("period") == "all")
        spans = set(zip(feed_all["period_start"], feed_all["period_end"], strict=True))
        assert spans == {(min(cases["index_month"]), max(cases["index_month"]))}, (audit_id, spans)
    leak = _csv(out / "csf_leak" / "metrics.csv")
    assert leak.filter(pl.col("period_type") == "month")["period"].unique().to_list() == ["2024-12"]
    # the same counts as the one month with a cell: the 2024-10 case adds to no measure
    sums = ["level", "group_key", "measure_id", "numerator", "denominator", "suppressed"]
    assert leak.filter(pl.col("period") == "all").select(sums).equals(leak.filter(pl.col("period") == "2024-12").select(sums))
    # the low back pain episodes: the headline, the episode-rate table and its months, the site index, the feed's 'all'
    # (every episode is in a measure's denominator: all episodes) count the same
    folder = out / AUDIT
    feed = _csv(folder / "metrics.csv").filter(pl.col("period") == "all")
    assert set(zip(feed["period_start"], feed["period_end"], strict=True)) == {("2024-09", "2025-03")}
    cases = _csv(folder / "cases.csv")
    judged = cases.filter(pl.col("outcome").is_in(["no_early_imaging", "early_imaging"]))
    n, d = judged.filter(pl.col("outcome") == "no_early_imaging").height, judged.height
    assert (n, d) == (1, 4)  # L-1 (2024-09-10) is not judged: its imaging window begins before the orders held
    assert cases.filter(pl.col("is_window_before_orders") == "true")["index_month"].to_list() == ["2024-09"]
    html = (folder / "report.html").read_text(encoding="utf-8")
    headline = _section(html, "<h2>Headline measures")
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", headline, re.S) if "Episodes without lumbar imaging" in r)
    assert _cells(row)[2:4] == [str(n), str(d)], _cells(row)
    section = _section(html, "<h2>Episodes without lumbar imaging in the first 28 days (HEDIS-style rate)")
    rows = [_cells(r) for r in re.findall(r"<tr>(.*?)</tr>", section, re.S)]
    total = next(c for c in rows if c[0] == "All episodes" and c[1].isdigit())
    months = [c for c in rows if re.match(r"\d{4}-\d{2}", c[0])]
    assert total[1:3] == [str(n), str(d)], total
    assert [m[0][:7] for m in months] == ["2024-09", "2024-11", "2025-01", "2025-02", "2025-03"]
    assert [sum(int(m[i]) for m in months) for i in (1, 2)] == [n, d], months
    # the months whose look-back reaches before the diagnoses held are marked as the feed marks them, and counted
    by_month = _csv(folder / "metrics.csv").filter(pl.col("period_type") == "month")
    looked = dict(zip(by_month["period"], by_month["look_back"], strict=True))
    marked = [m[0][:7] for m in months if m[0].endswith("look-back before the data")]
    assert marked == ["2024-09", "2024-11", "2025-01", "2025-02"]
    assert all((looked[m[0][:7]] == "before_data") == (m[0][:7] in marked) for m in months), looked
    assert "Those months count in the total above, as in the headline" in _words(section)
    assert f"{n} / {d} = " in site


def test_a_department_page_names_the_audit_s_own_unit(deck_runs):
    """The audit author's review: a department page said "other departments' orders of the same case" for every
    audit; the low back pain audit's unit is the episode."""
    out = Path(deck_runs["runs"]["combined"]["out"])
    for audit_id, unit in (("csf_leak", "case"), (AUDIT, "episode")):
        pages = sorted((out / audit_id / "departments").glob("*.html"))
        notes = [p for p in pages if "Only this department's orders are listed" in p.read_text(encoding="utf-8")]
        assert notes, audit_id
        for page in notes:
            text = page.read_text(encoding="utf-8")
            assert f"other departments' orders of the same {unit} are on their pages" in text, page


def test_the_flagged_count_says_its_episodes_are_not_the_headline_rates():
    """2026-04's report printed "9 of the 13 episodes with an audited order" under a headline of "4 / 13": its 13
    counts complicated episodes too, the rate's N the uncomplicated episodes judged, and the committee read the two
    13s as one. Each audit's words follow the count ([report] audited_cases_note), on a department's page too; the
    CSF-leak's "2 of the 4 cases" beside its right-study measure's "2 / 4" likewise."""
    import html  # noqa: PLC0415

    from pipeline.resources import reports_dir  # noqa: PLC0415

    page = (reports_dir() / "report.html").read_text(encoding="utf-8")
    sentence = re.search(r"<p>(\{\{ flagged\.n_flagged_cases.*?)\n", page).group(1)
    flagged = {"n_flagged_cases": 9, "n_cases": 13, "n_flagged_orders": 9}
    found = {a.id: a for a in audits.discover()}
    said = {}
    for audit_id, kind, review in (
        ("low_back_pain", "hospital", False),
        ("low_back_pain", "department", False),
        ("csf_leak", "hospital", True),
    ):
        spec = ReportSpec.of(found[audit_id])
        out = make_env().from_string(sentence).render(flagged=flagged, spec=spec, scope={"kind": kind}, gives_review=review)
        said[audit_id, kind] = " ".join(html.unescape(out).split())
    assert said == {
        ("low_back_pain", "hospital"): "9 of the 13 episodes with an audited order (complicated ones included; the headline"
        " rate's N counts only the uncomplicated episodes judged) have an inappropriate order (9 such orders).",
        ("low_back_pain", "department"): "9 of the 13 episodes with an audited order from this department (complicated"
        " ones included; the headline rate's N counts only the uncomplicated episodes judged) have an inappropriate"
        " order (9 such orders placed by this department).",
        ("csf_leak", "hospital"): "9 of the 13 cases with an audited order (any verdict; the right-study measure's N"
        " counts only cases with evaluated imaging) have an inappropriate or review order (9 such orders).",
    }
