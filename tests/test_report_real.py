"""The report on a real pipeline run over generated data (not the fixture warehouse).

One module-scoped run (4000 patients, 12 months, --no-validate); the tests read what it wrote.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import duckdb
import polars as pl
import pytest
from conftest import run_cli

from pipeline import render
from pipeline.synth import generate

LINK = re.compile(r'href="([^"#]+)(?:#[^"]*)?"')


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("real")
    generate(root / "in", patients=4000, months=12, seed=11, start_month="2025-01")
    out, wh = root / "out", root / "wh.duckdb"
    result = run_cli("run", "--input", root / "in", "--out", out, "--warehouse", wh, "--no-validate")
    assert result.returncode == 0, result.stderr
    return {"out": out.resolve(), "wh": wh, "in": root / "in", "report": (out / "report.html").read_text(encoding="utf-8")}


def _counts(wh: Path, period: str) -> dict:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        rows = con.execute(
            "SELECT measure_id, numerator, denominator FROM mart_metric_counts WHERE level = 'overall' AND period = ?",
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
    info = json.loads((run["out"] / "run.json").read_text())
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
    labels = {m: label for m, label, _ in render.MAIN_MEASURES}
    for measure, label in labels.items():
        assert by_label[label] == list(counts[measure]), measure
    assert counts["inappropriate_order_rate"][1] > 0


def page_section(page: str, anchor: str) -> str:
    start = page.index(f'<section id="{anchor}">')
    return page[start : page.index("</section>", start)]


def test_case_list_rows_equal_cases_csv(run):
    cases = pl.read_csv(run["out"] / "cases.csv", infer_schema=False)
    orders = pl.read_csv(run["out"] / "audited_orders.csv", infer_schema=False)
    section = page_section(run["report"], "cases")
    assert section.count("case-start") == cases.height
    assert section.count('<tr class="v-') == orders.height
    for key in cases["patient_key"].unique().to_list():
        assert key in section


def test_department_pages_for_each_department_with_cases(run):
    orders = pl.read_csv(run["out"] / "audited_orders.csv", infer_schema=False)
    departments = orders["ordering_department"].drop_nulls().unique().to_list()
    assert departments
    index = (run["out"] / "index.html").read_text(encoding="utf-8")
    for d in departments:
        page = run["out"] / "departments" / f"{render.slugify(d)}.html"
        assert page.is_file(), d
        assert f"departments/{render.slugify(d)}.html" in index
        text = page.read_text(encoding="utf-8")
        assert f"CSF-leak imaging audit: {html.escape(d)}" in text
        assert "case-start" in text  # its cases are listed


def test_every_local_link_resolves(run):
    out = run["out"]
    for page in out.rglob("*.html"):
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if target.startswith(("http:", "https:", "mailto:")):
                continue
            assert (page.parent / target).resolve().is_file(), f"{page.name} -> {target}"


def test_attrition_and_risk_factors_from_marts(run):
    attrition = pl.read_csv(run["out"] / "attrition.csv")
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


def test_site_index_lists_month_folders(tmp_path, run):
    for month in ("2025-01", "2025-02"):
        (tmp_path / month / "departments").mkdir(parents=True)
        (tmp_path / month / "index.html").write_text("x")
        (tmp_path / month / "departments" / "a-123456.html").write_text("x")
    (tmp_path / "not-a-month").mkdir()
    target = render.render_site_index(tmp_path)
    text = target.read_text(encoding="utf-8")
    assert 'href="2025-01/index.html"' in text and 'href="2025-02/index.html"' in text
    assert "not-a-month" not in text
    assert text.index("2025-02") < text.index("2025-01")  # newest first


def test_site_index_never_prints_a_withheld_count_as_none(tmp_path):
    """The site index reads each month's metrics.json: a headline cell the feed withholds has no numerator."""
    month = tmp_path / "2025-01"
    month.mkdir()
    (month / "index.html").write_text("x")
    withheld = {"level": "overall", "numerator": None, "denominator": 40, "rate": None, "suppressed": True}
    head = [dict(withheld, measure_id=m) for m in ("inappropriate_order_rate", "first_imaging_right_study")]
    (month / "metrics.json").write_text(json.dumps({"headline": head}))
    text = render.render_site_index(tmp_path).read_text(encoding="utf-8")
    assert "None" not in text and "withheld from the shared feed: see the report" in text
