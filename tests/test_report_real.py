"""The report on a real pipeline run over generated data (not the fixture warehouse).

One module-scoped run (4000 patients, 12 months, --no-validate); the tests read what it wrote.
"""

from __future__ import annotations

import html
import json
import re
import zipfile
from pathlib import Path

import duckdb
import polars as pl
import pytest
from conftest import run_cli

from pipeline import audits
from pipeline.report import render, site_index
from pipeline.report.names import department_name
from pipeline.report.spec import ReportSpec
from pipeline.synth import generate

LINK = re.compile(r'href="([^"#]+)(?:#[^"]*)?"')


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("real")
    generate(root / "in", patients=4000, months=12, seed=11, start_month="2025-01")
    out, wh = root / "out", root / "wh.duckdb"
    result = run_cli("run", "--input", root / "in", "--out", out, "--warehouse", wh, "--no-validate")
    assert result.returncode == 0, result.stderr
    return {
        "out": out.resolve(),
        "wh": wh,
        "in": root / "in",
        "report": (out / "csf_leak" / "report.html").read_text(encoding="utf-8"),
    }


def _counts(wh: Path, period: str) -> dict:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        rows = con.execute(
            "SELECT measure_id, numerator, denominator FROM csf_leak__mart_metric_counts WHERE level = 'overall' AND period = ?",
            [period],
        ).fetchall()
    finally:
        con.close()
    return {m: (n, d) for m, n, d in rows}


def _cells(text: str) -> str:
    """The report text with tags dropped and entities decoded (numbers as a reader sees them)."""
    return html.unescape(re.sub(r"<[^>]+>", " ", text))


def test_sections_present_with_real_content(run):
    page = run["report"]
    for anchor in ["headline", "trend", "groups", "attrition", "timing", "risk", "cases", "methods"]:
        assert f'<section id="{anchor}">' in page, anchor
    assert page.count('class="chart"') >= 4  # p-charts, department chart, funnel, histogram
    assert "No cases in this period" not in page
    assert "Warning: demo pseudonym key" in page  # the CLI run used the demo key
    info = json.loads((run["out"] / "csf_leak" / "run.json").read_text())
    assert info["run_id"] in page and info["rule_set_version"] in page
    for item in info["inputs"]:
        assert item["sha256"] in page


def test_headline_matches_mart_metric_counts(run):
    counts = _counts(run["wh"], "all")
    head = page_section(run["report"], "headline")
    rows = re.findall(r"<tr><th scope=\"row\">(.*?)</tr>", head, flags=re.S)
    by_label = {}
    for row in rows:
        nums = re.findall(r'<td class="num">([\d,]+)</td>', row)
        by_label[_cells(row.split("<br>")[0]).strip()] = [int(n.replace(",", "")) for n in nums[:2]]
    spec = ReportSpec.of(next(a for a in audits.discover() if a.id == "csf_leak"))
    labels = {m.measure_id: m.label for m in spec.measures}
    for measure, label in labels.items():
        assert by_label[label] == list(counts[measure]), measure
    assert counts["inappropriate_order_rate"][1] > 0


def page_section(page: str, anchor: str) -> str:
    start = page.index(f'<section id="{anchor}">')
    return page[start : page.index("</section>", start)]


def test_flagged_case_list_is_the_stated_selection(run):
    """Flagged cases are listed (the most recent 5 per department of the case), appropriate ones counted."""
    cases = pl.read_csv(run["out"] / "csf_leak" / "cases.csv", infer_schema=False).with_columns(
        pl.col("n_inappropriate", "n_review").cast(pl.Int64),
        pl.col("first_imaging_department").fill_null("(not recorded)"),
    )
    flagged = cases.filter(pl.col("n_inappropriate") + pl.col("n_review") > 0)
    expected = flagged.group_by("first_imaging_department").agg(pl.len().clip(upper_bound=5).alias("k"))["k"].sum()
    section = page_section(run["report"], "cases")
    assert section.count("case-start") == expected > 0
    verdicts = re.findall(r'<tr class="v-(\w+)', section)
    assert verdicts and set(verdicts) <= {"inappropriate", "review"}  # appropriate orders are counted, not listed
    text = _cells(section)
    assert (
        f"{flagged.height:,} of the {cases.height:,} cases with an audited order (any verdict; the right-study measure's N"
        " counts only cases with evaluated imaging) have an inappropriate or review order"
    ) in " ".join(text.split())
    assert f"{cases.height - flagged.height:,} cases with audited orders, none of them flagged, are counted, not listed" in text


def test_the_flagged_episodes_are_counted_among_those_with_an_audited_order(run):
    """Low back pain episodes without imaging are cases too (the measure's good outcome): the flagged-case
    section counts among the episodes with an audited order, and says so (it read "28 of 38 episodes" where
    the report's headline counts 53)."""
    episodes = pl.read_csv(run["out"] / "low_back_pain" / "cases.csv", infer_schema=False).with_columns(
        pl.col("n_orders", "n_early_imaging").cast(pl.Int64)
    )
    imaged = episodes.filter(pl.col("n_orders") > 0)
    assert imaged.height < episodes.height  # episodes without an order exist: the case this test is about
    report = (run["out"] / "low_back_pain" / "report.html").read_text(encoding="utf-8")
    text = _cells(page_section(report, "cases"))
    # the audit gives no review verdict: "an inappropriate or review order" named one a clinician would look for
    flagged = episodes.filter(pl.col("n_early_imaging") > 0).height
    assert (
        f"{flagged:,} of the {imaged.height:,} episodes with an audited order (complicated ones included; the headline"
        " rate's N counts only the uncomplicated episodes judged) have an inappropriate order ("
    ) in " ".join(text.split())
    assert "inappropriate or review" not in text


def test_department_pages_for_each_department_with_cases(run):
    orders = pl.read_csv(run["out"] / "csf_leak" / "audited_orders.csv", infer_schema=False)
    departments = orders["ordering_department"].drop_nulls().unique().to_list()
    assert departments
    index = (run["out"] / "csf_leak" / "index.html").read_text(encoding="utf-8")
    for d in departments:
        page = run["out"] / "csf_leak" / "departments" / f"{render.slugify(d)}.html"
        assert page.is_file(), d
        assert f"departments/{render.slugify(d)}.html" in index
        text = page.read_text(encoding="utf-8")
        assert f"CSF-leak imaging audit: {html.escape(department_name(d, {}))}" in text


def test_every_local_link_resolves(run):
    out = run["out"]
    for page in out.rglob("*.html"):
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if target.startswith(("http:", "https:", "mailto:")):
                continue
            assert (page.parent / target).resolve().is_file(), f"{page.name} -> {target}"


def test_attrition_and_risk_factors_from_marts(run):
    attrition = pl.read_csv(run["out"] / "csf_leak" / "attrition.csv")
    section = _cells(page_section(run["report"], "attrition"))
    for row in attrition.filter(pl.col("kind") == "step").iter_rows(named=True):
        assert row["step"] in section
        assert f"{row['count']:,}" in section
    assert "Needle gauge" in page_section(run["report"], "risk")


def test_no_raw_patient_id_in_output(run):
    ids = set(pl.read_csv(run["in"] / "procedures.csv", infer_schema=False)["patient_id"].to_list())
    pattern = re.compile(r"\bP\d{7}\b")
    for f in run["out"].rglob("*"):
        if f.is_file() and f.suffix in {".html", ".csv", ".json"}:
            found = set(pattern.findall(f.read_text(encoding="utf-8", errors="replace"))) & ids
            assert not found, f"{f.name}: {sorted(found)[:3]}"


def test_site_index_lists_audits_and_their_month_folders(tmp_path, run):
    audit = tmp_path / "csf_leak"
    for month in ("2025-01", "2025-02"):
        (audit / month / "departments").mkdir(parents=True)
        (audit / month / "index.html").write_text("x")
        (audit / month / "departments" / "a-123456.html").write_text("x")
    (audit / "not-a-month").mkdir()
    (tmp_path / "not-an-audit").mkdir()
    headline = [
        {
            "measure_id": "inappropriate_order_rate",
            "numerator": 4,
            "denominator": 37,
            "rate": 4 / 37,
            "ci_low": 0.043,
            "ci_high": 0.247,
        },
        {
            "measure_id": "first_imaging_right_study",
            "numerator": 11,
            "denominator": 15,
            "rate": 11 / 15,
            "ci_low": 0.48,
            "ci_high": 0.89,
        },
    ]
    measures = [
        {"id": "first_imaging_right_study", "label": "Right first study", "headline": True},
        {"id": "inappropriate_order_rate", "label": "Inappropriate orders", "headline": True},
        {"id": "review_order_rate", "label": "Review", "headline": False},
    ]
    about = {"title": "Imaging for suspected CSF leak", "measures": measures}
    (audit / "2025-01" / "run.json").write_text(json.dumps({"run_id": "r-jan", "period": "2025-01", "audit": about}))
    (audit / "2025-02" / "run.json").write_text(
        json.dumps({"run_id": "r-feb", "period": "2025-02", "headline": headline, "audit": about})
    )
    target = site_index.render_site_index(tmp_path)
    text = target.read_text(encoding="utf-8")
    # the internal numbers of each month (run.json), every rate with n / N; a small N is marked, not hidden
    assert "4 / 37 = 10.8%" in text and "11 / 15 = 73.3%" in text and 'class="lowrel"' in text
    assert "too few to rate" not in text and "r-feb" in text and "Imaging for suspected CSF leak" in text
    assert 'href="csf_leak/2025-01/index.html"' in text and 'href="csf_leak/2025-02/index.html"' in text
    assert "not-a-month" not in text and "not-an-audit" not in text
    assert "Review" not in text  # headline measures only
    assert text.index("2025-02") < text.index("2025-01")  # newest first


def test_site_index_names_each_audits_all_period_by_its_months_as_its_report_does(run):
    """Two audits' 'all' over one extract span different months (a low back pain episode needs no procedure):
    the site index said 'all' for both, beside rates over different months; it names the months as each report
    does ('all months, 2025-01 to 2025-11'), and the log and run.json say it in the same words."""
    index = (run["out"] / "index.html").read_text(encoding="utf-8")
    labels = {}
    for audit_id in ("csf_leak", "low_back_pain"):
        report = (run["out"] / audit_id / "report.html").read_text(encoding="utf-8")
        label = re.search(r'<p class="meta">Period (all months, \d{4}-\d{2} to \d{4}-\d{2}) ·', report)
        assert label is not None, audit_id
        labels[audit_id] = label.group(1)
        assert f'href="{audit_id}/index.html">{label.group(1)}</a>' in index, (audit_id, label.group(1))
        status = json.loads((run["out"] / audit_id / "run.json").read_text(encoding="utf-8"))["status"]
        assert status["period"] == label.group(1)
    assert labels["csf_leak"] != labels["low_back_pain"]  # the months differ, so 'all' alone misled


def test_report_stays_bounded_on_a_case_dense_extract(tmp_path):
    """Hundreds of flagged cases: the report lists the stated selection (5 most recent per department),
    counts the rest and points to the workbook, which lists every order."""
    generate(tmp_path / "in", patients=20000, months=6, seed=5, start_month="2025-01", case_density=10)
    out = tmp_path / "out"
    result = run_cli("run", "--input", tmp_path / "in", "--out", out, "--no-validate")
    assert result.returncode == 0, result.stderr
    cases = pl.read_csv(out / "csf_leak" / "cases.csv", infer_schema=False)
    flagged = cases.filter(pl.col("n_inappropriate").cast(pl.Int64) + pl.col("n_review").cast(pl.Int64) > 0)
    departments = flagged["first_imaging_department"].n_unique()
    assert flagged.height > 5 * departments  # more flagged cases than the report lists
    report = (out / "csf_leak" / "report.html").read_text(encoding="utf-8")
    section = page_section(report, "cases")
    assert section.count("case-start") == 5 * departments
    assert "Listed here: the 5 most recent flagged cases of each department" in _cells(section)
    assert len(report.encode()) < 1_500_000
    orders = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
    with zipfile.ZipFile(out / "csf_leak" / "case_list.xlsx") as z:
        assert z.read("xl/worksheets/sheet1.xml").count(b"<row ") == orders.height + 1  # every order, and the header


def test_one_flagged_case_per_department_reads_in_the_singular(tmp_path):
    """[reporting] flagged_cases_per_department = 1: the report said "the 1 most recent flagged cases of each
    department" and "at most 1 flagged cases per department"."""
    generate(tmp_path / "in", patients=4000, months=3, seed=11, start_month="2025-01", case_density=5)
    (tmp_path / "order-audit.toml").write_text("[reporting]\nflagged_cases_per_department = 1\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ("--config", tmp_path / "order-audit.toml", "--no-validate", "--audit", "csf_leak")
    result = run_cli("run", "--input", tmp_path / "in", "--out", out, *args)
    assert result.returncode == 0, result.stderr
    cases = pl.read_csv(out / "csf_leak" / "cases.csv", infer_schema=False)
    flagged = cases.filter(pl.col("n_inappropriate").cast(pl.Int64) + pl.col("n_review").cast(pl.Int64) > 0)
    departments = flagged["first_imaging_department"].n_unique()
    assert flagged.height > departments > 1  # some department has more flagged cases than the report lists
    text = " ".join(_cells((out / "csf_leak" / "report.html").read_text(encoding="utf-8")).split())
    assert (
        "Listed here: the most recent flagged case of each department (the department of its first evaluated imaging"
        f" order), {departments} cases."
    ) in text
    assert "The printed report lists at most 1 flagged case per department, the most recent first" in text


def test_the_flagged_case_sentence_agrees_in_number(deck_runs):
    """One case, one order: "1 of the 1 case ... has ... (1 such order", never "1 such orders" (a department page
    with one case read "1 of 1 cases ... (1 such orders"). The decks' department pages have such counts."""
    out = deck_runs["runs"]["combined"]["out"]
    pages = sorted(out.glob("*/departments/*.html"))
    sentences = [re.sub(r"\s+", " ", _cells(page_section(p.read_text(encoding="utf-8"), "cases"))) for p in pages]
    assert any("(1 such order " in t for t in sentences) and any(" of the 1 case with" in t for t in sentences)
    assert not any(re.search(r"\b1 such orders\b|\bthe 1 (case|episode)s\b", t) for t in sentences)
    one_has = r"\b1 of the \d[\d,]* (case|episode)s? with an audited order( from this department)?( \([^)]*\))? have\b"
    assert not any(re.search(one_has, t) for t in sentences)
    assert not any(re.search(r"not listed\.\S", t) for t in sentences)  # the next sentence after a space
    # '0 of the 1 case ... has', not 'have'; and no '0 cases with audited orders, none of them flagged, are counted'
    # where every one is flagged (a hospital page and department pages of both audits printed both)
    pages += [out / audit_id / "report.html" for audit_id in ("csf_leak", "low_back_pain")]
    sentences = [re.sub(r"\s+", " ", _cells(page_section(p.read_text(encoding="utf-8"), "cases"))) for p in pages]
    assert any(re.search(r"\b0 of the 1 (case|episode) with", t) for t in sentences)
    assert not any(re.search(r"\bof the 1 (case|episode) with an audited order[a-z ]*( \([^)]*\))? have\b", t) for t in sentences)
    assert any(" with audited orders, none of them flagged" in t for t in sentences)
    assert not any(re.search(r"\b0 (cases|episodes) with audited orders, none of them flagged", t) for t in sentences)


def test_one_provider_and_one_case_read_in_the_singular(deck_runs):
    """A department page with one provider below the funnel's threshold, or one case with imaging, read "All 1
    providers had fewer than 20 ... each (1 orders judged ...)" and "1 cases with imaging: median 96.7 h (quartiles
    96.7-96.7 h)" (the small synthetic month's department pages). The decks' department pages have such counts."""
    out = deck_runs["runs"]["combined"]["out"]
    pages = sorted(out.glob("*/departments/*.html")) + [out / a / "report.html" for a in ("csf_leak", "low_back_pain")]
    texts = [re.sub(r"\s+", " ", _cells(p.read_text(encoding="utf-8"))) for p in pages]
    assert any("The only provider had fewer than" in t for t in texts)
    assert not any(re.search(r"\b(All|other) 1 providers\b|\b1 cases with imaging\b|\(1 [a-z ]+ each\b", t) for t in texts)
    one = [t for t in texts if "1 case with imaging" in t]
    assert one and not any(re.search(r"\b1 case with imaging: median", t) for t in one)


def test_a_funnel_position_outside_the_limits_says_better_or_worse(run):
    """A department's or provider's funnel position says what it means by the measure's direction, as a p-chart
    signal says good or bad news: 'below 99.8% limit' of the low back pain early-imaging rate (lower is better)
    read as failing to the committee. The report's tables and the workbook's Providers sheet say it the same way."""
    from xlsx_xml import Workbook

    seen = 0
    for audit_id in ("csf_leak", "low_back_pain"):
        spec = ReportSpec.of(next(a for a in audits.discover() if a.id == audit_id))
        lower = spec.measure(spec.funnel_measure).direction == "lower_is_better"
        html_text = (run["out"] / audit_id / "report.html").read_text(encoding="utf-8")
        cells = re.findall(r"<td>((?:above|below|within)[^<]*)</td>", html_text)
        book = Workbook(run["out"] / audit_id / "case_list.xlsx").cells("Providers")
        cells += [c["text"] for (_, j), c in book.items() if c["text"] and c["text"].startswith(("above", "below"))]
        for position in cells:
            if position == "within limits":
                continue
            seen += 1
            better = position.startswith("below") == lower
            assert position.endswith(" (better)" if better else " (worse)"), (audit_id, position)
    assert seen, "no department or provider outside the funnel limits in the generated run"


def test_the_first_pages_say_which_way_each_rate_is_good(run):
    """The audit's index and the site index set a higher-is-better rate beside a lower-is-better one (low back pain:
    30.8% of episodes without imaging beside 90.0% of orders early); only the report's headline said which way each
    was good, so a member reading the first page for a minute could not tell a bad 30.8% from a bad 90% (a committee
    member's review). Each column head now says it, from the manifest's direction."""
    spec = ReportSpec.of(next(a for a in audits.discover() if a.id == "csf_leak"))
    better = {"higher_is_better": "↑ higher is better", "lower_is_better": "↓ lower is better"}

    def heads(page: Path, table_at: str) -> list[str]:
        text = page.read_text(encoding="utf-8")
        table = text[text.index(table_at) :]
        return [
            " ".join(_cells(h).split())
            for h in re.findall(r"<th scope=\"col\">(.*?)</th>", table[: table.index("</thead>")], re.S)
        ]

    months = heads(run["out"] / "csf_leak" / "index.html", '<section id="months">')
    assert [h for h in months if h != "Month"] == [
        f"{t.label} n / N {t.denominator} · rate · 95% CI · {better[t.direction]}" for t in spec.trend_measures
    ]
    site = heads(run["out"] / "index.html", '<section id="audit-csf_leak">')
    headline = [m for m in spec.measures if m.headline]
    assert site[3:-1] == [f"{m.label} n / N · rate · 95% CI · {better[m.direction]}" for m in headline], site


def test_the_report_says_how_many_local_times_fell_in_the_repeated_autumn_hour(run):
    """A local time in the hour the clocks repeat is read as the earlier instant: run.json counted them, the report
    said nothing, and a committee member checking an order near the 72-hour line could not know its time was in
    doubt (a committee member's review: 18 imaging orders in the 2026-04 month's extract)."""
    inputs = json.loads((run["out"] / "csf_leak" / "run.json").read_text())["inputs"]
    doubt = [(i["ambiguous_local_times"], i["table"]) for i in inputs if i["ambiguous_local_times"]]
    assert doubt, inputs  # the synthetic extract's times cross two autumn nights
    said = " ".join(_cells(run["report"]).split())
    counts = ", ".join(f"{n:,} in the {t.replace('_', ' ')}" for n, t in doubt)
    assert f"Local times in the hour the clocks repeat when daylight saving ends: {counts} (the whole input's). Each" in said
    assert "may be an hour off." in said
