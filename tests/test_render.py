"""Renderer tests on a hand-built fixture warehouse (no pipeline run)."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import jinja2
import polars as pl
import pytest

from pipeline import audits as audits_mod
from pipeline.errors import ReportError
from pipeline.report import feed, pages, pdf, relations, render, sections, templates
from pipeline.report import reid as reid_mod
from pipeline.report.measure import build_metrics, with_rates
from pipeline.report.names import department_name
from pipeline.report.spec import ReportSpec
from tests import fixtures_marts as fx

HOSTILE_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
DATA_FILES = ["metrics.csv", "metrics.parquet", "metrics.json", "case_list.xlsx"]


@pytest.fixture(scope="module")
def warehouse():
    return fx.build_fixture()


@pytest.fixture(scope="module")
def metrics(warehouse):
    return build_metrics(warehouse)


@pytest.fixture(scope="module")
def out(warehouse, metrics, tmp_path_factory):
    root = tmp_path_factory.mktemp("render")
    reid = root / "restricted" / "crosswalk.csv"
    out_dir = root / "out"
    written = render.render_outputs(warehouse, out_dir, fx.run_info(), metrics)
    written.append(reid_mod.write_reid_file(warehouse, reid, out_dir, [fx.AUDIT]))
    return {"dir": out_dir, "written": written, "reid": reid}


def _html_files(out_dir: Path) -> list[Path]:
    return sorted(out_dir.rglob("*.html"))


def test_expected_files(out):
    d = out["dir"]
    for name in ["report.html", "index.html", *DATA_FILES]:
        assert (d / name).is_file(), name
    pages = sorted(p.name for p in (d / "departments").glob("*.html"))
    assert len(pages) == len(fx.DEPARTMENTS)
    assert all(p.replace("-", "").replace(".", "").isalnum() for p in pages)  # hostile name -> safe slug
    assert set(out["written"]) >= {d / "report.html", d / "index.html", out["reid"]}
    assert not (d / "report.pdf").exists()


def test_strict_undefined_raises():
    env = templates.make_env()
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing }}").render()
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("index.html").render(run={"run_id": "x"})


def test_missing_run_info_key_fails(warehouse, metrics, tmp_path):
    info = fx.run_info()
    del info["rule_set_version"]
    with pytest.raises(KeyError, match="rule_set_version"):
        render.render_outputs(warehouse, tmp_path / "o", info, metrics)


def test_failed_query_is_an_error(metrics, tmp_path):
    con = fx.build_fixture(n_cases=5)
    con.execute("DROP VIEW mart_attrition")  # the audit's mart, as the report layer reads it
    with pytest.raises(duckdb.CatalogException):
        render.render_outputs(con, tmp_path / "o", fx.run_info(), metrics)


def test_hostile_strings_are_inert_in_every_html_file(out):
    files = _html_files(out["dir"])
    assert len(files) == 2 + len(fx.DEPARTMENTS)
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "<script" not in text.lower(), path  # no script at all: not ours, not injected
        assert "alert(1)</" not in text, path
    report = (out["dir"] / "report.html").read_text(encoding="utf-8")
    assert report.count(HOSTILE_ESCAPED) >= 4  # department, order name, indication text, attrition note
    assert f"headache {HOSTILE_ESCAPED}" in report  # indication text
    # the hostile department as a tick label inside the inline SVG, escaped by the chart template
    assert f">{HOSTILE_ESCAPED}</text>" in report
    assert "Tiny &amp; Rare" in report


def test_no_raw_patient_id_in_any_output_file(out):
    needle = fx.RAW_ID_PREFIX.encode()
    files = [p for p in out["dir"].rglob("*") if p.is_file()]
    assert len(files) >= 9
    for path in files:
        data = path.read_bytes()
        assert needle not in data, path
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for member in z.namelist():
                    assert needle not in z.read(member), f"{path}:{member}"
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            for col in frame.columns:
                assert not frame[col].cast(pl.String).str.contains(fx.RAW_ID_PREFIX, literal=True).any()
    # the pseudonym is there instead: in the report for a listed (recent, flagged) case, in the workbook for every case
    assert f"P{27:016x}".encode() in (out["dir"] / "report.html").read_bytes()
    with zipfile.ZipFile(out["dir"] / "case_list.xlsx") as z:
        sheet = z.read("xl/worksheets/sheet1.xml")
    assert all(f"P{i:016x}".encode() in sheet for i in range(30))


def test_reid_file_owner_only_and_complete(out, warehouse):
    reid = out["reid"]
    assert stat.S_IMODE(reid.stat().st_mode) == 0o600
    lines = reid.read_text().splitlines()
    assert lines[0] == "patient_key,patient_id"
    assert f"P{0:016x},{fx.RAW_ID}" in lines
    n_case_patients = warehouse.execute("SELECT count(DISTINCT patient_key) FROM mart_cases").fetchall()[0][0]
    assert len(lines) == 1 + n_case_patients


def test_reid_file_refused_inside_output_folder(warehouse, metrics, tmp_path):
    with pytest.raises(ReportError, match="outside|inside"):
        reid_mod.write_reid_file(warehouse, tmp_path / "o" / "crosswalk.csv", tmp_path / "o", [fx.AUDIT])


def test_report_sections_and_low_reliability_marks(out):
    report = (out["dir"] / "report.html").read_text(encoding="utf-8")
    for anchor in ["headline", "trend", "groups", "providers", "attrition", "timing", "risk", "cases", "methods"]:
        assert f'id="{anchor}"' in report
    # internal document: every rate shown; a small denominator is marked and footnoted, never blanked
    assert "too few to rate" not in report
    assert 'class="lowrel"' in report and "Low reliability: fewer than 20 in the denominator" in report
    assert "Warning: demo pseudonym key" in report
    assert "a" * 64 in report  # input hash
    assert "20261101T020000Z-abc123" in report  # run id
    assert 'id="rule-CSF-06"' in report and 'href="report.html#rule-CSF-06"' in report
    assert report.count('class="chart"') >= 4  # p-charts, department intervals, funnel, histogram
    assert "special-cause" in report.lower() and "2026-03" in report
    assert fx.REJECTED_RAW_ID not in report  # rejected values are never shown, only counts
    assert "Needle type" in report and "Patient position" in report
    dept = next((out["dir"] / "departments").glob("tiny-rare-*.html")).read_text(encoding="utf-8")
    assert "Tiny &amp; Rare" in dept and "too few to rate" not in dept and 'class="lowrel"' in dept


def test_no_demo_warning_with_a_real_key(warehouse, metrics, tmp_path):
    render.render_outputs(warehouse, tmp_path, fx.run_info(demo_key=False), metrics)
    assert "demo pseudonym key" not in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_metrics_feed(out, metrics, warehouse):
    d = out["dir"]
    fed = pl.read_parquet(d / "metrics.parquet")
    assert fed.equals(feed.build_feed(metrics, fx.run_info(), relations.Atoms.read(warehouse)))
    csv = pl.read_csv(d / "metrics.csv", infer_schema_length=0)
    assert csv.columns == fed.columns and csv.height == fed.height
    summary = json.loads((d / "metrics.json").read_text())
    assert summary["schema_version"] == "3.3" and summary["audit_id"] == fx.run_info()["audit"]["id"]
    assert fed.columns[:2] == ["schema_version", "audit_id"] and fed["audit_id"].unique().to_list() == [summary["audit_id"]]
    assert summary["headline_period"] == fx.REPORT_MONTH
    assert {r["measure_id"] for r in summary["headline"]} >= {"inappropriate_order_rate", "first_imaging_right_study"}
    # 3 of 10: a denominator below the feed's threshold of 11 is withheld, and a provider cell without its
    # denominator is left out of the feed (it would hold no count)
    assert fed.filter((pl.col("group_key") == "PRV-HAND") & (pl.col("period") == fx.REPORT_MONTH)).height == 0
    assert fed.filter(pl.col("level") == "provider")["denominator"].null_count() == 0
    # ...while the internal frame the report prints keeps the rate and interval
    inside = metrics.filter((pl.col("group_key") == "PRV-HAND") & (pl.col("period") == fx.REPORT_MONTH)).row(0, named=True)
    assert inside["rate"] == 0.3 and inside["ci_low"] == pytest.approx(0.1078, abs=5e-5)


def test_workbook_has_explanation_and_no_formulas(out):
    with zipfile.ZipFile(out["dir"] / "case_list.xlsx") as z:
        names = z.namelist()
        assert "xl/worksheets/sheet1.xml" in names and "xl/worksheets/sheet2.xml" in names
        workbook_xml = z.read("xl/workbook.xml").decode()
        assert 'name="Cases"' in workbook_xml and 'name="Explanation"' in workbook_xml
        assert b"<f>" not in z.read("xl/worksheets/sheet1.xml")


def test_rerender_is_byte_identical(warehouse, metrics, out, tmp_path):
    again = tmp_path / "again"
    render.render_outputs(warehouse, again, fx.run_info(), metrics)
    first = sorted(p.relative_to(out["dir"]) for p in out["dir"].rglob("*") if p.is_file())
    second = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert first == second
    for rel in first:
        assert (out["dir"] / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_pdf_without_engine_says_what_to_install(warehouse, metrics, tmp_path, monkeypatch):
    import builtins

    monkeypatch.setattr(pdf, "find_chromium", lambda: None)
    real_import = builtins.__import__

    def no_weasyprint(name, *args, **kwargs):
        if name == "weasyprint":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_weasyprint)
    with pytest.raises(ReportError, match="apt-get install -y chromium"):
        render.render_outputs(warehouse, tmp_path / "o", fx.run_info(), metrics, pdf=True)


def test_slug_is_safe_and_distinct():
    a, b = render.slugify("<script>alert(1)</script>"), render.slugify("script alert 1 script")
    assert a != b and "<" not in a and "/" not in a
    assert render.slugify(None).startswith("department-")


def test_charts_are_the_same_bytes_on_a_second_render(warehouse, metrics, out, tmp_path):
    """Same inputs, same SVG: a second render writes every page byte for byte as the first."""
    again = tmp_path / "again"
    render.render_outputs(warehouse, again, fx.run_info(), metrics)
    pages = sorted(p.relative_to(out["dir"]) for p in _html_files(out["dir"]))
    assert any("<svg" in (again / rel).read_text(encoding="utf-8") for rel in pages)
    for rel in pages:
        assert (again / rel).read_bytes() == (out["dir"] / rel).read_bytes(), rel


def test_a_second_audit_is_rendered_while_the_first_is_paused(warehouse, metrics, out, tmp_path):
    """``render_steps`` pauses once its pages are written, before it waits for its feed and workbook threads:
    a run renders its next audit there (``publishing.publish_period``). Finished, each folder holds the files
    ``render_outputs`` writes, byte for byte."""
    first = render.Pending(render.render_steps(warehouse, tmp_path / "a", fx.run_info(), metrics))
    assert (tmp_path / "a" / "report.html").is_file() and not (tmp_path / "a" / "index.html").exists()
    second = render.Pending(render.render_steps(warehouse, tmp_path / "b", fx.run_info(), metrics))
    first.finish()
    second.finish()
    files = sorted(p.relative_to(out["dir"]) for p in out["dir"].rglob("*") if p.is_file())
    for folder in ("a", "b"):
        assert sorted(p.relative_to(tmp_path / folder) for p in (tmp_path / folder).rglob("*") if p.is_file()) == files
        for rel in files:
            assert (tmp_path / folder / rel).read_bytes() == (out["dir"] / rel).read_bytes(), (folder, rel)


def _charts_by_section(html: str) -> dict[str, list[str]]:
    """The charts (their names) shown in each ``<section id=...>`` of a page, each inside its captioned figure."""
    out = {}
    for section, body in re.findall(r'<section id="([^"]+)">(.*?)</section>', html, flags=re.S):
        figures = re.findall(r'<figure class="chart-figure">(.*?)<figcaption>[^<]+</figcaption></figure>', body, flags=re.S)
        names = [re.search(r'aria-label="([^"]+) chart"', f).group(1) for f in figures]
        assert len(names) == body.count("<svg"), section  # no chart outside a figure
        if names:
            out[section] = names
    return out


def test_every_page_shows_its_charts_where_it_needs_them(out):
    """The hospital page and every department page carry their charts in place: a p-chart per trend measure,
    the departments' intervals (hospital page), the providers' funnel and the audit's histogram."""
    trend = ["first_imaging_right_study", "inappropriate_order_rate"]
    report = (out["dir"] / "report.html").read_text(encoding="utf-8")
    assert _charts_by_section(report) == {
        "trend": [f"overall-{m}" for m in trend],
        "groups": ["dept-rates"],
        "providers": ["overall-funnel"],
        "timing": ["overall-hours"],
    }
    pages = sorted((out["dir"] / "departments").glob("*.html"))
    assert len(pages) == len(fx.DEPARTMENTS)
    for page in pages:
        charts = _charts_by_section(page.read_text(encoding="utf-8"))
        assert charts == {"trend": [f"dept-{m}" for m in trend], "providers": ["dept-funnel"], "timing": ["dept-hours"]}, page


def test_display_names_and_special_cause_news(warehouse, metrics, tmp_path):
    """Departments print by their configured name, else title case of a snake_case key; a special-cause
    month says whether it is good or bad news for the measure."""
    info = fx.run_info()
    info["config"]["display_names"] = {"departments": {"Neurology": "Neurology & Headache"}}
    render.render_outputs(warehouse, tmp_path, info, metrics)
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Neurology &amp; Headache" in report and ">Neurology</a>" not in report
    assert ">Neurology &amp; Headache" in report.split('aria-label="dept-rates chart"')[1].split("</svg>")[0]
    assert "bad news: worse than usual" in report  # 2026-03: inappropriate orders above the upper limit
    assert (tmp_path / "departments" / f"{render.slugify('Neurology')}.html").is_file()  # file names keep the key
    assert department_name("interventional_radiology", {}) == "Interventional Radiology"
    assert department_name("Tiny & Rare", {}) == "Tiny & Rare"


def test_pdf_header_and_footer_templates_escape_and_number_pages():
    top, bottom = pdf._templates(pdf.RunningHeader(left="Audit · <b>x</b>", right="run r1"))
    assert "&lt;b&gt;x&lt;/b&gt;" in top and "run r1" in top
    assert '<span class="pageNumber"></span> of <span class="totalPages"></span>' in bottom


def test_every_printed_page_names_the_period_status_rule_set_and_data():
    """A page taken from the meeting's printed copy said the audit, the period and the run only: not whether the
    figures were final, under which rule set, nor how far the data reached."""
    info = {
        "run_id": "r1",
        "audit": {"title": "Imaging for suspected CSF leak", "short_title": "CSF-leak imaging audit"},
        "rule_set_version": "csf-leak-2026.11.0",
        "status": {"period": "2026-04", "maturity": {"status": "provisional", "data_through": "2026-06-30"}},
    }
    assert pages.running_header(info, "2026-04") == (
        "CSF-leak imaging audit · All departments · 2026-04 (provisional)",
        "rule set csf-leak-2026.11.0 · data through 2026-06-30 · run r1",
    )
    # a run without maturity or rule set (an older run.json): what is known, nothing empty
    assert pages.running_header({"run_id": "r1", "audit": {"title": "T"}}, "2026-04") == (
        "T · All departments · 2026-04",
        "run r1",
    )


def test_provider_table_is_bounded_and_says_what_it_left_out():
    def rates(key, inappropriate, orders):
        rows = [(key, "inappropriate_order_rate", inappropriate, orders), (key, "premature_order_rate", 0, orders)]
        return rows

    def frame(rows):
        df = pl.DataFrame(rows, schema=["group_key", "measure_id", "numerator", "denominator"], orient="row")
        return with_rates(df)

    overall = {"inappropriate_order_rate": 0.1}
    few = [r for i in range(30) for r in rates(f"S{i:02d}", 3 if i == 0 else 0, 3)]  # too few orders: one sentence
    spec = ReportSpec.of(fx.AUDIT)  # its funnel measure: inappropriate_order_rate
    table = sections.provider_table(frame([*rates("R1", 2, 25), *rates("R2", 20, 40), *few]), overall, 20, spec)
    assert [r["group_key"] for r in table["rows"]] == ["R1", "R2"] and not table["only_outliers"]
    assert [r["funnel"] for r in table["rows"]] == ["within limits", "above 99.8% limit (worse)"]
    assert (table["n_rest"], table["rest_orders"], table["rest_inappropriate"], table["rest_outside"]) == (30, 90, 3, 1)
    many = [r for i in range(100) for r in rates(f"R{i:03d}", 15 if i % 20 == 0 else 3, 30)]  # more than a page holds
    table = sections.provider_table(frame(many), overall, 20, spec)
    assert table["only_outliers"] and [r["group_key"] for r in table["rows"]] == ["R000", "R020", "R040", "R060", "R080"]
    assert table["n_rated"] == 100 and table["n_outliers"] == 5 and table["selection"] == "outside_95"
    # more outliers than a meeting can go through: those outside the 99.8% limits
    # (p0 = 0.1, N = 30: the 95% limit is 20.7%, the 99.8% limit 26.9%; 7/30 is between, 9/30 beyond)
    mixed = [r for i in range(100) for r in rates(f"M{i:03d}", 9 if i % 20 == 0 else 7 if i < 60 else 3, 30)]
    table = sections.provider_table(frame(mixed), overall, 20, spec)
    assert table["selection"] == "outside_998" and table["n_outliers"] == 62 and table["n_special"] == 5
    assert [r["group_key"] for r in table["rows"]] == ["M000", "M020", "M040", "M060", "M080"]
    # and when those are too many as well: the 40 with the most orders, listed alphabetically
    special = [r for i in range(60) for r in rates(f"X{i:03d}", 40 + i, 80 + 2 * i)]
    table = sections.provider_table(frame(special), overall, 20, spec)
    assert table["selection"] == "outside_998_largest" and table["n_special"] == 60
    assert [r["group_key"] for r in table["rows"]] == [f"X{i:03d}" for i in range(20, 60)]


def test_providers_are_named_and_ordered_as_delivered_departments_by_their_display_names():
    """A provider id is printed as delivered and the list is alphabetical by what is printed: rows were first named
    and sorted as departments ('dr_b' as 'Dr B', before 'dr-a') and then renamed, so the order followed names never
    printed. A department row takes its display name."""
    rows = [(key, m, 1, 25) for key in ("dr_b", "dr-a") for m in ("inappropriate_order_rate", "premature_order_rate")]
    rates = with_rates(pl.DataFrame(rows, schema=["group_key", "measure_id", "numerator", "denominator"], orient="row"))
    spec = ReportSpec.of(fx.AUDIT)
    table = sections.provider_table(rates, {"inappropriate_order_rate": 0.04}, 20, spec)
    assert [r["name"] for r in table["rows"]] == ["dr-a", "dr_b"]
    departments = sections.group_rows(rates, {}, 20, lambda key: {"dr_b": "Zoology", "dr-a": "Anatomy"}[key], spec)
    assert [r["name"] for r in departments] == ["Anatomy", "Zoology"]


def test_compiled_templates_are_reused_across_environments_and_an_edited_one_is_compiled_again(tmp_path):
    audit_dir = tmp_path / "report"
    audit_dir.mkdir()
    partial = audit_dir / "note.html"
    partial.write_text("first {{ x }}", encoding="utf-8")
    before = len(templates._COMPILED._code)
    assert templates.make_env(audit_dir).get_template("audit/note.html").render(x=1) == "first 1"
    assert len(templates._COMPILED._code) == before + 1  # compiled once and kept
    assert templates.make_env(audit_dir).get_template("audit/note.html").render(x=2) == "first 2"  # a new env, the same code
    assert len(templates._COMPILED._code) == before + 1
    partial.write_text("second {{ x }}", encoding="utf-8")
    assert templates.make_env(audit_dir).get_template("audit/note.html").render(x=3) == "second 3"


def test_compiled_templates_are_kept_between_runs_in_jinja_s_own_per_user_cache_folder(tmp_path):
    """A second process loads the report's compiled templates from Jinja's per-user cache folder (mode 0700, in
    the temporary folder) instead of compiling them again, unless the environment's settings differ (their
    fingerprint names the files: code compiled without escaping is never loaded with it); where Jinja refuses
    that folder, they are compiled as without a cache, and nothing fails."""
    code = (
        "import os, jinja2\n"
        "from pipeline.report import templates\n"
        "if os.environ.get('SETTINGS'):\n"
        "    templates._settings_fingerprint = lambda: os.environ['SETTINGS']\n"
        "compiled = []\n"
        "original = jinja2.Environment.compile\n"
        "jinja2.Environment.compile = lambda self, *a, **k: compiled.append(1) or original(self, *a, **k)\n"
        "templates.make_env().get_template('report.html')\n"
        "print(len(compiled))\n"
    )

    def compiled_in_a_run(temporary: Path, settings: str = "") -> str:
        env = {**os.environ, "TMPDIR": str(temporary), "SETTINGS": settings}
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()

    assert compiled_in_a_run(tmp_path) == "1"
    assert compiled_in_a_run(tmp_path) == "0"  # loaded from the folder the first run wrote
    assert compiled_in_a_run(tmp_path, settings="other settings") == "1"  # not the code compiled under other settings
    folder = tmp_path / f"_jinja2-cache-{os.getuid()}"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and any(folder.iterdir())
    refused = tmp_path / "refused"
    refused.mkdir()
    (refused / f"_jinja2-cache-{os.getuid()}").write_text("a file where Jinja wants its folder\n")
    assert compiled_in_a_run(refused) == "1" and compiled_in_a_run(refused) == "1"


def test_a_case_without_a_department_is_grouped_by_its_flagged_order():
    """Without a case department (the low back pain episode), a flagged case is listed under the department that
    placed its first flagged order, as the table's header says: it went under the department of its first order,
    an unflagged one (an unmapped code Internal Medicine placed the day before Orthopedics' early X-ray)."""
    from pipeline.report.caselist import flagged_selection

    cases = pl.DataFrame(
        {
            "case_id": ["E1", "E1", "E2"],
            "order_id": ["O1", "O2", "O3"],
            "verdict": ["not_evaluable", "inappropriate", "inappropriate"],
            "ordering_department": ["internal_medicine", "orthopedics", "primary_care"],
            "_group": ["internal_medicine", "orthopedics", "primary_care"],  # no case department: the order's
            "_recency": [1, 1, 2],
            "_ordered": [None, None, None],
        }
    )
    chosen = flagged_selection(cases, per_department=5)
    assert {g["group"]: g["flagged_cases"] for g in chosen["groups"]} == {"orthopedics": 1, "primary_care": 1}
    assert chosen["rows"].select("order_id", "group").rows() == [("O2", "orthopedics"), ("O3", "primary_care")]
    # a case department is the case's own: every order carries it, whichever is flagged
    attributed = flagged_selection(cases.with_columns(pl.lit("neurology").alias("_group")), per_department=5)
    assert [g["group"] for g in attributed["groups"]] == ["neurology"]


def _said(markup) -> str:
    """A rendered sentence as a reader sees it: tags dropped, entities decoded, spaces collapsed."""
    import html

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", str(markup))).split())


def test_a_count_in_a_template_takes_the_number_of_its_noun():
    """The templates' `counted` filter is pipeline.wording.counted: 'N = 1 orders judged' and 'the 1 providers' read
    wrong; thousands separators as `num` prints them."""
    shown = templates.make_env().from_string('{{ n|counted("order") }} · {{ n|counted("such order") }}')
    assert [shown.render(n=n) for n in (0, 1, 12_345)] == [
        "0 orders · 0 such orders",
        "1 order · 1 such order",
        "12,345 orders · 12,345 such orders",
    ]


def test_a_verdict_group_head_counts_its_denominator_in_orders():
    head = templates.make_env().get_template("_macros.html").module.reason_group_head
    group = {"verdict": "not_evaluable", "denominator_def": "orders judged (days 0-42)", "overlap": False}
    assert [_said(head(group | {"denominator": n})) for n in (0, 1, 1_234)] == [
        "Not evaluable · N = 0 orders: orders judged (days 0-42)",
        "Not evaluable · N = 1 order: orders judged (days 0-42)",
        "Not evaluable · N = 1,234 orders: orders judged (days 0-42)",
    ]
    overlap = {
        "verdict": "inappropriate",
        "denominator": 40,
        "denominator_def": "evaluated orders",
        "overlap": True,
        "reasons_sum": 3,
    }
    assert _said(head(overlap | {"orders": 1})) == (
        "Inappropriate · N = 40 orders: evaluated orders · an order can carry more than one reason: these rows add up to 3 for"
        " 1 inappropriate order"
    )
    assert _said(head(overlap | {"orders": 2})).endswith("these rows add up to 3 for 2 inappropriate orders")


def _providers(selection="rated", rows=0, **counts) -> dict:
    base = {
        "n_rated": rows,
        "n_outliers": 0,
        "n_special": 0,
        "n_rest": 0,
        "rest_orders": 0,
        "rest_inappropriate": 0,
        "rest_outside": 0,
    }
    return base | {"selection": selection, "rows": [{}] * rows} | counts


def test_the_providers_paragraph_reads_right_for_none_one_and_many():
    """sections.provider_table's selection in words: 'Listed: the 1 providers' and '... the 0 of them outside' (an
    empty table announced) read wrong; every count in the number its noun takes."""
    note = templates.make_env().get_template("_macros.html").module.providers_note

    def said(providers, here=""):
        return _said(note(providers, 20, "orders judged", "inappropriate orders", here, "../"))

    workbook = "in the workbook case_list.xlsx (sheet Providers)."
    assert said(_providers()) == "No provider had 20 or more orders judged in this period."
    assert said(_providers(rows=1)) == "Listed: the one provider with at least 20 orders judged, within the 95% funnel limits."
    # a department page says its figures are the department's, where the workbook's are a provider's over every
    # department (the committee review: a red diamond here was "within limits" there)
    assert said(_providers(rows=1, n_outliers=1), " in this department") == (
        "Listed: the one provider with at least 20 orders judged in this department, outside the 95% funnel limits."
        " The figures here count this department's orders judged alone; the workbook's sheet Providers counts each"
        " provider's in every department, so a provider who also ordered for another department has other figures there."
    )
    assert said(_providers(rows=3)) == (
        "Listed: the 3 providers with at least 20 orders judged, alphabetically; none of them outside the 95% funnel limits."
    )
    assert said(_providers(rows=3, n_outliers=1)) == (
        "Listed: the 3 providers with at least 20 orders judged, alphabetically; 1 of them outside the 95% funnel limits."
    )
    rated = "1,200 providers had at least 20 orders judged"
    within = "(the others are within the limits and in the workbook)."
    outside_95 = _providers("outside_95", n_rated=1_200)
    assert said(outside_95) == (f"{rated}; none of them is outside the 95% funnel limits, so none is listed {within}")
    assert said(outside_95 | {"n_outliers": 1, "rows": [{}]}) == (
        f"{rated}; listed: the one of them outside the 95% funnel limits {within}"
    )
    assert said(outside_95 | {"n_outliers": 7, "rows": [{}] * 7}) == (
        f"{rated}; listed, alphabetically: the 7 of them outside the 95% funnel limits {within}"
    )
    outside_998 = _providers("outside_998", n_rated=1_200, n_outliers=62)
    tail = "(the others are in the workbook, sheet Providers, with their funnel position)."
    head = f"{rated} and 62 of them are outside the 95% funnel limits, more than a meeting can go through;"
    assert said(outside_998) == f"{head} none of them is outside the 99.8% limits {tail}"
    assert said(outside_998 | {"n_special": 1, "rows": [{}]}) == f"{head} listed: the one outside the 99.8% limits {tail}"
    assert (
        said(outside_998 | {"n_special": 5, "rows": [{}] * 5})
        == f"{head} listed, alphabetically: the 5 outside the 99.8% limits {tail}"
    )
    # below the threshold: the only provider, the other one, all of them, the others
    assert said(_providers(n_rest=1, rest_orders=3, rest_inappropriate=1)) == (
        "No provider had 20 or more orders judged in this period. The only provider had fewer than 20 orders judged"
        f" (N = 3, n = 1: inappropriate orders): a hollow point in the funnel plot, with its n, N, rate and interval {workbook}"
    )
    assert said(_providers(rows=2, n_rest=1, rest_orders=1, rest_outside=1)).endswith(
        "The other provider had fewer than 20 orders judged (N = 1, n = 0: inappropriate orders; outside the 95% limits,"
        " which are approximate at so few orders): a red diamond in the funnel plot, with its n, N, rate and interval"
        f" {workbook}"
    )
    every = "each is a hollow point in the funnel plot, and every provider's n, N, rate and interval are"
    assert said(_providers(n_rest=2, rest_orders=1)) == (
        "No provider had 20 or more orders judged in this period. Both providers had fewer than 20 orders judged each (together"
        f" N = 1, n = 0: inappropriate orders): {every} {workbook}"
    )
    assert said(_providers(n_rest=3, rest_orders=7, rest_inappropriate=4)) == (
        "No provider had 20 or more orders judged in this period. All 3 providers had fewer than 20 orders judged each (together"
        f" N = 7, n = 4: inappropriate orders): {every} {workbook}"
    )
    assert said(_providers(rows=1, n_rest=2, rest_orders=9)).startswith(
        "Listed: the one provider with at least 20 orders judged, within the 95% funnel limits. The other 2 providers had fewer"
    )
    assert said(_providers(rows=2, n_rest=1_500, rest_orders=9_000, rest_inappropriate=900, rest_outside=12)).endswith(
        "The other 1,500 providers had fewer than 20 orders judged each (together N = 9,000, n = 900: inappropriate orders; 12 of"
        " them outside the 95% limits, which are approximate at so few orders): each is a hollow point in the funnel plot"
        " (those a red diamond), and every provider's n, N, rate and interval are in the workbook case_list.xlsx (sheet"
        " Providers)."
    )
    # the chart draws a point outside the 95% limits as a red diamond: the 2026-04 CSF-leak month said all 4 providers
    # were hollow points beside its red diamond
    assert said(_providers(n_rest=4, rest_orders=10, rest_inappropriate=4, rest_outside=1)).endswith(
        "(together N = 10, n = 4: inappropriate orders; 1 of them outside the 95% limits, which are approximate at so few"
        " orders): each is a hollow point in the funnel plot (that one a red diamond), and every provider's n, N, rate and"
        f" interval are {workbook}"
    )
    assert ": each is a red diamond in the funnel plot, and" in said(_providers(n_rest=2, rest_orders=2, rest_outside=2))


def test_the_revised_note_counts_its_orders():
    banner = templates.make_env().get_template("_status_banner.html")

    def said(orders):
        revised = {"orders": orders, "added": 0, "removed": 0, "changed": orders, "since_run": "R1"}
        return _said(banner.render(status={"period": "2026-04", "revised": revised}, run={"run_id": "R2"}))

    assert said(1) == (
        "Revised since the last run: 1 order (0 added, 0 removed, 1 with another verdict or reason) since run R1;"
        " order-audit diff R1 R2 lists them."
    )
    assert said(2_000).startswith("Revised since the last run: 2,000 orders (0 added, 0 removed, 2,000 with another")


def test_an_empty_departments_table_says_no_figure_not_no_orders():
    """A department page whose department placed orders none of which was judged read 'No orders placed and no cases
    attributed in this period' above a table counting its orders placed (the low back pain audit's first month)."""
    empty = templates.make_env().get_template("_macros.html").module.no_figures
    lbp = {"case_department": None, "case_unit": "episode"}
    csf = {"case_department": "first_imaging_department", "case_unit": "case"}
    assert _said(empty({"kind": "department", "name": "Emergency"}, lbp)) == (
        "No figure for Emergency in these measures in this period: none of the orders it placed is in their denominators"
        " (its orders placed are counted below)."
    )
    assert _said(empty({"kind": "department", "name": "Emergency"}, csf)) == (
        "No figure for Emergency in these measures in this period: none of the orders it placed, and no case attributed to"
        " it, is in their denominators (its orders placed are counted below)."
    )
    assert (
        _said(empty({"kind": "hospital"}, lbp))
        == "No figure in these measures in this period: no order is in their denominators."
    )
    assert _said(empty({"kind": "hospital"}, csf)) == (
        "No figure in these measures in this period: no order or case is in their denominators."
    )


def test_a_page_shows_its_measures_without_a_denominator_instead_of_leaving_them_out():
    """A department whose orders were none judged had no row for the early-imaging rate, and its page listed only
    the other measures under 'Headline measures'. Its own measures are rows with no denominator (order measures;
    case measures only where the audit attributes cases to a department); a page with no figure at all keeps its
    one line ('No audited orders in this period')."""
    lbp = ReportSpec.of(next(a for a in audits_mod.discover() if a.id == "low_back_pain"))
    rules = pl.DataFrame(
        schema={
            "rule_id": pl.String,
            "reason_code": pl.String,
            "label": pl.String,
            "verdict": pl.String,
            "explanation": pl.String,
        }
    )

    def main(spec, level, rows):
        frame = pl.DataFrame(
            [("2024-07", level, "emergency", m, n, d) for m, n, d in rows],
            schema=["period", "level", "group_key", "measure_id", "numerator", "denominator"],
            orient="row",
        )
        shown = sections.headline(with_rates(frame), "2024-07", level, "emergency", rules, 20, spec, {})["main"]
        return [
            (r["measure_id"], r["numerator"], r["denominator"], r["low"]) for r in shown if r.get("direction") or r["denominator"]
        ]

    # (the added row carries its direction, as the page's "Better" column reads it; the rows kept have theirs from the feed)
    judged_none = [("not_evaluable_order_rate", 0, 1), ("excluded_order_rate", 1, 1)]
    assert main(lbp, "department", judged_none) == [
        ("early_imaging_order_rate", 0, 0, False),
        ("not_evaluable_order_rate", 0, 1, True),
        ("excluded_order_rate", 1, 1, True),
    ]
    csf = ReportSpec.of(fx.AUDIT)  # attributes cases to a department: its case measure is the department's too
    assert [m for m, *_ in main(csf, "department", [("not_evaluable_rate", 1, 2)])] == [
        "first_imaging_right_study",
        "inappropriate_order_rate",
        "premature_order_rate",
        "not_evaluable_rate",
        "review_order_rate",
    ]
    assert main(lbp, "department", []) == []


def test_a_group_head_is_kept_with_its_rows_in_print(out):
    """The printed low back pain report of the data's first month left 'Inappropriate · N = 2 orders' alone at the foot
    of page 1, its rule on page 2: each group's head row of the headline and reason tables is a table body of its own,
    kept with the next in print (style.css), as the case list's department heads are."""
    report = (out["dir"] / "report.html").read_text(encoding="utf-8")
    for table in ("headline", "reasons"):
        start = report.index(f'<table class="{table}">')
        body = report[start : report.index("</table>", start)]
        heads = re.findall(r'<tr class="group[^"]*">', body)
        kept = re.findall(
            r'<tbody class="group-head"><tr class="group[^"]*"><th colspan="6">.*?</th></tr></tbody>\s*<tbody>', body
        )
        assert heads and len(kept) == len(heads), (table, len(kept), len(heads))
    assert "tbody.group-head { break-after: avoid" in (Path(render.__file__).parents[2] / "reports" / "style.css").read_text()


LOW_MARK = '<span class="lowrel" title="low reliability: small denominator (see the † note)">&#8201;†</span>'


def test_every_dagger_is_the_one_mark_and_its_section_explains_it(out):
    """The † is written in one place (_macros.html ``dagger``), with its tooltip; every section of a page that holds one
    says what it means, so a printed page carries it: the departments table had nothing of its own (on the hospital
    page the department chart's key, just above it, says it; on a department page, without the chart, a footnote)."""
    pages = [out["dir"] / "report.html", out["dir"] / "index.html", *sorted((out["dir"] / "departments").glob("*.html"))]
    marked = []
    for path in pages:
        page = path.read_text(encoding="utf-8")
        assert page.count('class="lowrel"') == page.count(LOW_MARK), path
        for section in re.split(r"<section\b", page)[1:]:
            if LOW_MARK in section:
                marked.append((path.name, re.match(r'[^>]*?(?:id="([^"]+)")?>', section).group(1)))
                # the footnote, or on the hospital page's departments the chart's key just above the table
                said = (
                    "† Low reliability: fewer than 20 in the denominator",
                    "†: low reliability, fewer than 20 in the denominator",
                )
                assert any(s in section for s in said), (path.name, section[:80])
    assert ("report.html", "groups") in marked and any(p.startswith("tiny-rare") and s == "headline" for p, s in marked)


def test_a_dagger_in_the_earlier_line_alone_brings_the_headline_footnote():
    """The month before can be low while the month itself is not: the "Earlier" line's † gets the headline's footnote."""
    trend = [
        {"measure_id": "m", "last": "2026-04", "n_data": 2, "previous": {"period": "2026-03", "denominator": 6, "low": True}}
    ]
    ctx = {"headline": {"main": [{"measure_id": "m"}], "any_low": False}, "trend": trend, "period": "2026-04"}
    ctx |= {"departments": [{"cells": [{"denominator": 30, "low": False}]}], "hospital_row": None}
    page = pages.with_low_notes(ctx)
    assert page["headline"]["any_low"] is True and page["departments_low"] is False
    quiet = pages.with_low_notes(ctx | {"trend": [dict(trend[0], previous={"denominator": 30, "low": False})]})
    assert quiet["headline"]["any_low"] is False
    # the measure not among the page's headline rows has no Earlier line, so no note for it
    assert pages.with_low_notes(ctx | {"headline": {"main": [], "any_low": False}})["headline"]["any_low"] is False
    small_hospital = pages.with_low_notes(ctx | {"hospital_row": {"cells": [{"denominator": 5, "low": True}]}})
    assert small_hospital["departments_low"] is True


def _width_rows(case_id: str, order_ids: list[str], time: str, rule: str) -> list:
    """Case-list rows (``caselist.shaped_rows``' fields the column widths read) of one case with ``order_ids``."""
    from collections import namedtuple  # noqa: PLC0415

    from pipeline.report import caselist  # noqa: PLC0415

    points = pl.DataFrame({"o": order_ids}).select(caselist.order_id_points(pl.col("o"))).to_series().to_list()
    row = namedtuple("Row", "case_id patient_key order_id order_id_pt time rules index_date procedure_department")
    return [
        row(case_id, "P0123456789abcdef", o, pt, time, [rule], "2026-04-14", "Anesthesiology")
        for o, pt in zip(order_ids, points, strict=True)
    ]


@pytest.mark.parametrize(
    ("case_id", "time", "order_id", "whole", "whole_on_letter"),
    [
        ("PR008949", "120 h 26 min", "O00007049", True, True),  # the usual: the order and Why columns as CASE_COLUMNS
        ("PR008949", "120 h 26 min", "RAD-ACC-2026041500012345", True, True),  # an accession number: the column holds it
        # a low back pain episode id (28 characters) beside it, its time a day's number: Letter's page, 50 pt narrower,
        # has no more room for it
        ("P64bcc6657d88da4-2026-04-15", "day 10", "RAD-ACC-2026041500012345", True, False),
        # the episode id beside a time as long as the CSF-leak audit's: Why has no more to give, the id wraps
        ("P64bcc6657d88da4-2026-04-15", "120 h 26 min", "RAD-ACC-2026041500012345", False, False),
        ("PR008949", "120 h 26 min", "RAD-ACC-2026041500012345-REPEAT-0000000001", False, False),  # longer than the most
    ],
)
@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_the_order_column_holds_an_order_id_whole_up_to_its_widest(case_id, time, order_id, whole, whole_on_letter, paper):
    """A hospital's accession number printed whole (it was 'RAD-ACC-' over '200000000009' over '0106' in the order
    column's 8%): the column grows to its longest id, up to ORDER_MOST_PT, taking room from the columns with room to
    spare and then from Why, which keeps WHY_LEAST; the case id's column is served first and never shrinks. On
    Letter's narrower page the widest is the same points, a larger share of it."""
    from pipeline.report import caselist  # noqa: PLC0415
    from pipeline.report.paper import PAPERS  # noqa: PLC0415

    width = PAPERS[paper].print_width_pt
    order_most, why_least = caselist.order_most(width), caselist.WHY_LEAST
    rows = _width_rows(case_id, ["O1", order_id], time, "CSF-07" if case_id.startswith("PR") else "LBP-05")
    widths = caselist.column_widths(rows, width)
    assert abs(sum(widths) - 100) < 0.05, widths
    assert widths[caselist.WHY] >= why_least and widths[caselist.ORDER] <= order_most
    assert widths[caselist.KEY] >= caselist._percent(len(case_id) * caselist.ID_CHAR_PT, width)  # the case id stays whole
    assert (rows[1].order_id_pt <= caselist.order_id_room(widths, width)) is (whole if paper == "a4" else whole_on_letter)
    if order_id == "O00007049" and paper == "a4":
        unchanged = (caselist.CASE_COLUMNS[caselist.ORDER], caselist.CASE_COLUMNS[caselist.WHY])
        assert (widths[caselist.ORDER], widths[caselist.WHY]) == unchanged
    if len(order_id) > 24:  # a longer id takes the most the column may have, no more
        assert widths[caselist.ORDER] == order_most
    elif not whole:  # Why gave all it may
        assert widths[caselist.WHY] == why_least


def test_the_order_column_s_widest_is_a4_s_16_percent_in_points_on_either_paper():
    from pipeline.report import caselist  # noqa: PLC0415
    from pipeline.report.paper import PAPERS  # noqa: PLC0415

    assert PAPERS["a4"].print_width_pt == 784.0 and PAPERS["letter"].print_width_pt == 734.0
    assert caselist.order_most(784.0) == 16.0 and caselist.order_most(734.0) == 17.1


def test_an_order_id_s_printed_width_is_estimated_from_its_characters():
    from pipeline.report import caselist  # noqa: PLC0415

    ids = pl.DataFrame({"o": ["RAD-ACC-2026041500012345", "0123456789", "MW-10", "", None]})
    points = ids.select(caselist.order_id_points(pl.col("o"))).to_series().to_list()
    # DejaVu Sans at 7 pt: 16 digits at 0.636 em, 2 hyphens at 0.361, 6 capitals at 0.78; M and W at 1.0
    expected = [7 * (16 * 0.636 + 2 * 0.361 + 6 * 0.78), 7 * 10 * 0.636, 7 * (2 * 1.0 + 0.361 + 2 * 0.636), 0.0, 0.0]
    assert points == pytest.approx(expected)


@pytest.mark.parametrize(
    ("rows", "scope", "said"),
    [
        (
            [],
            {"kind": "department", "name": "Primary Care"},
            "No adult index procedure was performed in Primary Care in this period",
        ),
        ([], {"kind": "hospital"}, "No adult index procedure in this period: no leak rate to show."),
        # a child's procedure only: no adult denominator, the factor recorded
        (
            [{"label": "Needle type", "value": "cutting", "numerator": 0, "denominator": 0, "recorded": 1}],
            {"kind": "department", "name": "Pediatrics"},
            "No adult index procedure was performed in Pediatrics in this period",
        ),
        (
            [{"label": "Needle type", "value": "not recorded", "numerator": 1, "denominator": 5, "recorded": 0}],
            {"kind": "department", "name": "Anesthesiology"},
            "The procedure log holds no risk factors",
        ),
    ],
)
def test_the_risk_factors_of_a_page_without_procedures_say_so_not_that_the_log_lacks_them(rows, scope, said):
    """A department that performed no index procedure (Primary Care orders imaging; it does no epidurals): its page
    said "The procedure log holds no risk factors" beside a hospital page that tabulates all of them (a committee
    member's review)."""
    from pipeline.report.audit_sections import helpers  # noqa: PLC0415

    spec = ReportSpec.of(next(a for a in audits_mod.discover() if a.id == "csf_leak"))
    env = templates.make_env(spec.report_dir)
    env.globals.update(helpers(20, spec.labels))
    page = env.get_template("audit/risk.html").render(scope=scope, section={"rows": rows}, low=20, parameters={})
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert said in text, text
    assert ("holds no risk factors" in text) is (said == "The procedure log holds no risk factors"), text


def test_a_share_of_an_input_set_aside_is_said_on_the_first_page_and_in_the_workbook():
    """595 of 7,550 orders set aside for a status word no map knew turned ten complete spines' other orders into
    'wrong region', and the first page said nothing (an adopting site's review): from 1% of a table's rows, the first
    page and the workbook's Period status say how many, and that the cases are judged without them."""
    from pipeline.report.audit_sections import status_texts  # noqa: PLC0415

    inputs = [
        {"table": "imaging_orders", "rows_read": 7550, "rows_rejected": 595},
        {"table": "procedures", "rows_read": 795, "rows_rejected": 7},  # under 1%: a few bad rows, no note
        {"table": "diagnoses", "rows_read": 0, "rows_rejected": 0},
    ]
    assert sections.set_aside({"inputs": inputs}) == [
        {"table": "imaging orders", "rejected": 595, "read": 7550, "share": 595 / 7550}
    ]
    assert sections.set_aside({"inputs": inputs[1:]}) == [] and sections.set_aside({}) == []
    spec = ReportSpec.of(next(a for a in audits_mod.discover() if a.id == "csf_leak"))
    run_info = {"run_id": "R1", "inputs": inputs, "status": {"period": "2025-06"}}
    (said,) = status_texts(templates.make_env(), run_info, spec)
    assert said == (
        "595 of 7,550 imaging orders set aside (7.9%). Rows the extract could not give the audit (unreadable, or failing"
        " a blocking data-quality check) are left out, so the cases they belong to are judged without them, and their"
        " verdicts can differ from the site's records; the report's Data quality lists the reasons. Fix the extract or"
        " the config, then run the period again."
    )
    page = (
        templates.make_env()
        .get_template("_status_banner.html")
        .render(status=run_info["status"], spec=spec, run=run_info, set_aside=sections.set_aside(run_info))
    )
    assert "<strong>595 of 7,550 imaging orders set aside\n(7.9%).</strong>" in page and "the report's" not in page


def test_the_guidelines_doi_is_printed_only_where_no_printed_reference_holds_it():
    """A third audit's [guideline] doi never reached the report (only run.json). It is printed after the reference
    where none of the printed references holds it: the low back pain audit's doi is its ACR criteria's, listed under
    "See also"; after the HEDIS reference it would have read as HEDIS's."""
    from pipeline.report.sections import _doi_unprinted  # noqa: PLC0415

    assert _doi_unprinted({"doi": "10.1/x"}, "Headache guideline. J 2025;1:1.") == "10.1/x"
    assert _doi_unprinted({"doi": "10.1/x"}, "Headache guideline. doi:10.1/x.") is None
    assert _doi_unprinted({"doi": "10.1/x", "also": ["ACR criteria. doi:10.1/x."]}, "HEDIS specifications.") is None
    assert _doi_unprinted({}, "Headache guideline.") is None


# the CSF-leak attrition of the committee's 2026-04 month (attrition.csv, notes left out): two rows count patients
CSF_ATTRITION = [
    (1, "Procedures in the period", "procedures", 477, "step"),
    (1, "Not a lumbar dural-puncture procedure (other codes)", "procedures", 217, "exclusion"),
    (2, "Index procedures (lumbar, can puncture the dura)", "procedures", 260, "step"),
    (2, "Index procedures: patients", "patients", 256, "step"),
    (2, "Under the minimum age at the procedure", "procedures", 19, "exclusion"),
    (3, "Index procedures in adults", "procedures", 241, "step"),
    (3, "No leak evidence attached", "procedures", 237, "exclusion"),
    (4, "Cases (adult index procedure with leak evidence)", "cases", 4, "step"),
    (4, "Cases: patients", "patients", 4, "step"),
    (4, "Cases without audited imaging in the window", "cases", 0, "exclusion"),
    (5, "Cases with imaging in the window", "cases", 4, "step"),
    (6, "Audited orders (listed)", "orders", 10, "step"),
    (6, "Excluded: cancelled", "orders", 0, "exclusion"),
    (7, "Orders in the window, not excluded", "orders", 10, "step"),
    (8, "Evaluated orders", "orders", 10, "step"),
    (9, "Flagged orders (inappropriate)", "orders", 4, "step"),
    (9, "Review findings", "orders", 0, "step"),
]
# the low back pain one's steps around its patients row
LBP_ATTRITION = [
    (4, "New episodes", "episodes", 17, "step"),
    (4, "Age unknown", "episodes", 1, "exclusion"),
    (5, "Episodes (new, in the age range)", "episodes", 16, "step"),
    (5, "Episodes: patients", "patients", 16, "step"),
    (5, "Complicated: red flag cancer", "episodes", 3, "exclusion"),
    (6, "Uncomplicated episodes", "episodes", 13, "step"),
    (7, "Episodes: patients again", "patients", 12, "step"),  # a later patients row: no base for it either
    (7, "Uncomplicated episodes whose imaging window the orders held cover", "episodes", 13, "step"),
]


def _attrition_percentages(rows: list[tuple]) -> dict[str, str | None]:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE mart_attrition (step_order INT, step VARCHAR, unit VARCHAR, count BIGINT, kind VARCHAR, note VARCHAR)"
    )
    con.executemany("INSERT INTO mart_attrition VALUES (?, ?, ?, ?, ?, '')", rows)
    shown = {}
    for r in sections.attrition(con):
        pct = r["percent_of_previous"]
        shown[r["step"]] = None if pct is None else f"{100 * pct:.1f}% of #{r['of_step']}"
    return shown


def test_an_attrition_percentage_is_shown_only_in_its_step_s_own_unit():
    """The CSF-leak attrition printed '1.6% of #2' on its 'Cases: patients' row: 4 patients of the 256 counted beside
    step 2, whose own row (the one '#2' reads as) is 260 index procedures. A row counting a step in another unit than
    the step's own (the unit its exclusions leave in) is a head count beside the funnel: no percentage, and no base
    for one. The funnel's own percentages stay, siblings (flagged and review orders) each of the step before."""
    shown = _attrition_percentages(CSF_ATTRITION)
    assert shown["Index procedures: patients"] is None and shown["Cases: patients"] is None
    assert shown["Index procedures (lumbar, can puncture the dura)"] == "54.5% of #1"
    assert shown["Index procedures in adults"] == "92.7% of #2"
    assert shown["Cases (adult index procedure with leak evidence)"] is None  # the first step counting cases
    assert shown["Cases with imaging in the window"] == "100.0% of #4"
    assert shown["Orders in the window, not excluded"] == "100.0% of #6"
    assert shown["Flagged orders (inappropriate)"] == "40.0% of #8" and shown["Review findings"] == "0.0% of #8"
    assert shown["Not a lumbar dural-puncture procedure (other codes)"] is None  # an exclusion: never
    lbp = _attrition_percentages(LBP_ATTRITION)
    assert lbp["Episodes: patients"] is None and lbp["Episodes: patients again"] is None
    assert lbp["Episodes (new, in the age range)"] == "94.1% of #4"
    assert lbp["Uncomplicated episodes"] == "81.2% of #5"
    assert lbp["Uncomplicated episodes whose imaging window the orders held cover"] == "100.0% of #6"
