"""The month a quality committee meets on, as `make demo` gives it: the demo extract, `--month 2026-06`.

One module-scoped run of the real CLI (the demo's generator parameters, with the gate and --pdf when
Chromium is installed); the tests read what it wrote, as a committee member or a reviewer would.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess

import polars as pl
import pytest
from conftest import run_cli
from xlsx_xml import Workbook

from pipeline.audits import with_parameters
from pipeline.report import pdf, render
from pipeline.report.caselist import TIME_AFTER_FORMAT
from pipeline.report.measure import wilson_interval
from pipeline.report.names import department_name
from pipeline.synth import generate

pytestmark = pytest.mark.slow
MONTH = "2026-06"
CHROMIUM = pdf.find_chromium()
# a file of this repository or of its design notes, as it would appear in a citation or description
REPO_FILE_NAME = re.compile(
    r"seeds/|\b(?:DESIGN|DOMAIN|TECH-NOTES|STYLE|METRICS_FEED|DATA_QUALITY|SCHEDULING|README|HELPER_GUIDE)\.md\b"
    r"|\bdocs/|\bpipeline/|\bsql/(?:staging|intermediate|marts)|\.sql\b|\b\w+\.py\b|\b000_[0-9a-f]{16}\.txt\b"
)


@pytest.fixture(scope="module")
def month(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("committee")
    generate(root / "in", patients=100_000, months=24, seed=7, start_month="2024-09")  # make demo's extract
    out, wh = root / "out", root / "wh.duckdb"
    args = ["run", "--input", root / "in", "--out", out, "--warehouse", wh, "--month", MONTH]
    result = run_cli(*args, *(["--pdf"] if CHROMIUM else []))
    assert result.returncode == 0, result.stderr
    return {
        "out": out.resolve(),
        "out_as_given": out,
        "stderr": result.stderr,
        "report": (out / "csf_leak" / "report.html").read_text(encoding="utf-8"),
        "index": (out / "csf_leak" / "index.html").read_text(encoding="utf-8"),
        "orders": pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False),
        "cases": pl.read_csv(out / "csf_leak" / "cases.csv", infer_schema=False),
    }


def _section(page: str, anchor: str) -> str:
    start = page.index(f'<section id="{anchor}">')
    return page[start : page.index("</section>", start)]


def _text(fragment: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment)))


def _table(fragment: str, css_class: str) -> list[list[str]]:
    """The body and footer rows of the first table with that class (and maybe others: "whole" when it prints whole), as
    cell texts."""
    start = re.search(rf'<table class="{css_class}[ "]', fragment).start()
    table = fragment[start : fragment.index("</table>", start)]
    body = table[table.index("</thead>") :]
    return [
        [_text(c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S)
    ]


def _int(text: str) -> int:
    return int(text.replace(",", ""))


# ----------------------------------------------------------------------------- printed


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)")
def test_printed_month_fits_twelve_pages_with_running_header(month):
    data = (month["out"] / "csf_leak" / "report.pdf").read_bytes()
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", data))
    assert 4 <= pages <= 12, pages
    assert f"wrote {month['out_as_given'] / 'csf_leak' / 'report.pdf'}" in month["stderr"]  # --pdf says where it wrote the file
    if shutil.which("pdftotext"):  # the header and page numbers, as printed on every page
        text = subprocess.run(
            ["pdftotext", "-layout", str(month["out"] / "csf_leak" / "report.pdf"), "-"], capture_output=True, text=True
        )
        page_texts = text.stdout.split("\f")[:pages]
        run_id = re.search(r"run (\d{8}T\d{6}Z-[0-9a-f]+)", month["report"]).group(1)
        for i, page in enumerate(page_texts, start=1):
            # whether the figures are final, the rule set and the data: a page taken alone still says them
            assert f"CSF-leak imaging audit · All departments · {MONTH} (provisional)" in page, i
            assert "rule set csf-leak-2026.11.0 · data through 2026-08-31 · " in page, i
            assert f"run {run_id}" in page and f"Page {i} of {pages}" in page, i


@pytest.mark.skipif(CHROMIUM is None or shutil.which("pdftotext") is None, reason="needs Chromium and pdftotext")
@pytest.mark.parametrize("audit", ["csf_leak", "low_back_pain"])
def test_the_printed_report_does_not_end_on_a_stray_table(month, audit):
    """The last printed page holds the data quality and the inputs whole, from the section's heading on: a
    committee member turned to a last page holding the inputs table alone (or under a row or two of the
    data-quality table) in both audits' reports of the demo month."""
    text = subprocess.run(
        ["pdftotext", "-layout", str(month["out"] / audit / "report.pdf"), "-"], capture_output=True, text=True, check=True
    ).stdout
    last = [page for page in text.split("\f") if page.strip()][-1]
    assert re.search(r"^Inputs and run$", last, flags=re.M), last
    assert re.search(r"^Data quality$", last, flags=re.M) and "Rejected and corrected input rows" in last, last


@pytest.mark.skipif(CHROMIUM is None or shutil.which("pdftotext") is None, reason="needs Chromium and pdftotext")
@pytest.mark.parametrize("audit", ["csf_leak", "low_back_pain"])
def test_no_printed_heading_is_split_across_pages(month, audit):
    """A trend's heading on two lines broke after its first: "...21 months, 1 with no cases counted (N = 0);" at the
    foot of a page, its centre alone atop the next over the chart. Every heading of the page prints whole on one."""
    folder = month["out"] / audit
    text = subprocess.run(["pdftotext", str(folder / "report.pdf"), "-"], capture_output=True, text=True, check=True).stdout
    pages = [" ".join(page.split()) for page in text.split("\f")]
    page = (folder / "report.html").read_text(encoding="utf-8")
    headings = [" ".join(_text(h).split()) for h in re.findall(r"<h[23][^>]*>(.*?)</h[23]>", page, flags=re.S)]
    long_ones = [h for h in headings if len(h) > 90]  # those that wrap onto a second printed line
    assert long_ones, headings
    split = [h for h in long_ones if not any(h in p for p in pages)]
    assert split == []


def test_continued_tables_repeat_their_header_and_the_case_id(month):
    report = month["report"]
    assert "thead { display: table-header-group; }" in report
    section = _section(report, "cases")
    rows = re.findall(r'<tr class="v-\w+[^"]*">(.*?)</tr>', section, flags=re.S)
    assert rows
    for row in rows:  # every order row names its case, so a row continued on a new page still does
        assert re.search(r'<td class="key"><span class="case-id">\w+', row), row[:200]


# ----------------------------------------------------------------------------- numbers


def test_every_headline_cell_has_a_number_and_nothing_is_too_few_to_rate(month):
    for page in month["out"].rglob("*.html"):
        assert "too few to rate" not in page.read_text(encoding="utf-8").lower(), page.name
    rows = _table(_section(month["report"], "headline"), "headline")
    measures = [r for r in rows if len(r) == 6]
    assert len(measures) == 5
    for label, _better, n, big_n, rate, ci in measures:
        assert re.fullmatch(r"[\d,]+", n) and re.fullmatch(r"[\d,]+", big_n), label
        assert re.fullmatch(r"\d+\.\d%( †)?", rate.replace("\u2009", " ")), (label, rate)
        assert re.fullmatch(r"\d+\.\d% – \d+\.\d%", ci), (label, ci)


def test_every_headline_figure_reads_the_same_in_the_index_the_feed_and_the_workbook(month):
    """The committee reads a headline figure on the report's first page and again on the site index, in the metrics
    feed and (summed over providers) in the workbook's Providers sheet; the verdicts of the workbook's Cases sheet
    are those of audited_orders.csv and of the report's hospital row. No test held these pairs together."""
    import json  # noqa: PLC0415

    rows = _table(_section(month["report"], "headline"), "headline")
    report = {r[0]: (_int(r[2]), _int(r[3]), r[4].replace("\u2009", " ").rstrip(" †")) for r in rows if len(r) == 6}
    info = json.loads((month["out"] / "csf_leak" / "run.json").read_text(encoding="utf-8"))
    # each label with the parameters the run used filled in, as the report fills them ("< 72 h")
    measures = {
        m["id"]: {**m, "label": with_parameters(m["label"], info["audit"]["parameters"])} for m in info["audit"]["measures"]
    }
    labelled = {next(k for k in report if k.startswith(m["label"])): m["id"] for m in measures.values()}
    assert len(labelled) == len(report) == 5

    # the site index: every headline measure as the report prints it
    index = html.unescape((month["out"] / "index.html").read_text(encoding="utf-8"))
    row = index[index.index('href="csf_leak/index.html">') :]
    cells = [_text(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row[: row.index("</tr>")], flags=re.S)]
    said = [re.match(r"([\d,]+) / ([\d,]+) = (\d+\.\d%)", c) for c in cells]
    in_index = [(_int(m.group(1)), _int(m.group(2)), m.group(3)) for m in said if m]
    headline_ids = [m["id"] for m in info["audit"]["measures"] if m["headline"]]
    assert in_index == [next(v for k, v in report.items() if labelled[k] == i) for i in headline_ids]

    # the metrics feed: the hospital's row of each measure, where it is released
    feed = pl.read_csv(month["out"] / "csf_leak" / "metrics.csv", infer_schema=False).filter(
        (pl.col("period") == MONTH) & (pl.col("level") == "overall")
    )
    released = 0
    for label, (n, big_n, rate) in report.items():
        cell = feed.filter(pl.col("measure_id") == labelled[label]).row(0, named=True)
        released += cell["denominator"] is not None
        if cell["suppressed"] == "false":
            assert (int(cell["numerator"]), int(cell["denominator"]), f"{float(cell['rate']):.1%}") == (n, big_n, rate), label
        else:  # withheld: its numerator, rate and interval; its denominator too when under the cell minimum
            assert cell["numerator"] is None and cell["rate"] is None, label
            assert cell["denominator"] in (None, str(big_n)), label
    assert released, "the demo month releases a hospital denominator at least"

    # the workbook: each provider measure's n and N add up to the hospital's; the Cases sheet's verdicts are the
    # audited orders' and the report's hospital row (orders placed, inappropriate, review)
    book = Workbook(month["out"] / "csf_leak" / "case_list.xlsx")
    providers = book.cells("Providers")
    header = {providers[(0, j)]["text"]: j for i, j in providers if i == 0}
    last = max(i for i, _ in providers)
    for label, mid in labelled.items():
        j = header.get(f"{measures[mid]['label']}: n")
        if j is None:
            continue  # not a provider measure
        total = [sum((providers.get((i, k)) or {}).get("number") or 0 for i in range(1, last + 1)) for k in (j, j + 1)]
        assert total == list(report[label][:2]), label
    verdicts = pl.Series([r["Verdict"] for r in book.rows("Cases")]).value_counts().sort("")
    assert verdicts.rows() == month["orders"]["verdict"].value_counts().sort("verdict").rows()
    hospital = _table(_section(month["report"], "groups"), "attribution")[-1]
    counted = dict(verdicts.rows())
    assert [_int(x) for x in hospital[1:5]] == [
        len(book.rows("Cases")),
        sum(counted.get(v, 0) for v in ("appropriate", "inappropriate", "review")),
        counted.get("inappropriate", 0),
        counted.get("review", 0),
    ]


def test_low_reliability_is_marked_with_a_footnote(month):
    head = _section(month["report"], "headline")
    marked = re.findall(r'<tr><th scope="row">(.*?)</tr>', head, flags=re.S)
    small = [r for r in marked if re.search(r'<td class="num">[\d,]+</td><td class="num">1\d</td>', r)]  # N of 10-19
    assert small, "the month has a measure on fewer than 20"
    assert all('class="lowrel"' in r for r in small)
    assert "Low reliability: fewer than 20 in the denominator" in head


def test_index_and_department_counts_add_up_to_the_hospital(month):
    orders, cases = month["orders"], month["cases"]
    for page in (month["index"], _section(month["report"], "groups")):
        rows = _table(page, "attribution")
        body, total = rows[:-1], rows[-1]
        assert total[0] == "Hospital"
        for j in range(1, len(total)):
            if total[j] != "–":
                assert sum(_int(r[j]) for r in body if r[j] != "–") == _int(total[j]), j
        assert _int(total[1]) == orders.height
    index_rows = _table(month["index"], "attribution")
    # the index's table is the report's, flagged cases too (the index had no flagged column)
    assert index_rows == _table(_section(month["report"], "groups"), "attribution")
    assert _int(index_rows[-1][5]) == cases.height  # cases by first imaging order, plus those without one
    flagged = month["orders"].filter(pl.col("verdict").is_in(["inappropriate", "review"]))["case_id"].n_unique()
    assert _int(index_rows[-1][6]) == flagged
    assert _int(index_rows[-1][7]) == cases.height  # cases by procedure department (second view)


def test_the_index_marks_the_provisional_months_as_the_report_does(month):
    """The report says the month is provisional and its p-charts draw it hollow; the index's months table printed
    its figures as the final ones beside them."""
    section = month["index"][month["index"].index('<section id="months">') :]
    rows = [_text(r) for r in re.findall(r"<tr>(.*?)</tr>", section[: section.index("</table>")], flags=re.S)]
    marked = [r.split()[0] for r in rows if "provisional" in r]
    assert marked == [MONTH], marked
    assert "Provisional." in _text(month["report"]) and "provisional month (may change)" in month["report"]


def test_the_low_back_pain_trend_starts_at_the_first_month_the_feed_calls_complete(month):
    """The trend's centre line pooled the months whose episodes look back past the diagnoses held (the feed marks them
    look_back = before_data; their "new" episodes may not be new), unmarked on the charts. The trend, its centre and the
    index's months start at the first complete month now, and the pages say why."""
    folder = month["out"] / "low_back_pain"
    feed = pl.read_csv(folder / "metrics.csv", infer_schema=False).filter(pl.col("period_type") == "month")
    complete = sorted(set(feed.filter(pl.col("look_back") == "complete")["period"]))
    assert sorted(set(feed["period"]))[0] < complete[0] <= MONTH  # the demo's first months are before_data
    first = complete[0]
    for page in ("report.html", "index.html"):
        said = _text((folder / page).read_text(encoding="utf-8"))
        assert f"The trend starts at {first}: episodes indexed before {feed['verified_from'][0]} look back past" in said
    report = _text((folder / "report.html").read_text(encoding="utf-8"))
    headings = re.findall(r"\), (\d{4}-\d{2}) to (\d{4}-\d{2}): \d+ months", report)
    assert headings and set(headings) == {(first, MONTH)}, headings
    index = (folder / "index.html").read_text(encoding="utf-8")
    section = index[index.index('<section id="months">') :]
    months = [_text(r).split()[0] for r in re.findall(r"<tr>(.*?)</tr>", section[: section.index("</table>")], flags=re.S)]
    assert months[0] == "Month" and min(months[1:]) == first and max(months[1:]) == MONTH, months  # under its header
    assert "The trend starts at" not in month["report"]  # the CSF-leak audit has no look-back


def test_every_department_in_any_output_has_a_page_counting_only_its_own(month):
    orders, cases = month["orders"], month["cases"]
    named = set(orders["ordering_department"].drop_nulls()) | set(cases["department"].drop_nulls())
    named |= set(cases["first_imaging_department"].drop_nulls())
    assert "interventional_radiology" in named  # a procedure department that orders no imaging
    for d in named:
        page = month["out"] / "csf_leak" / "departments" / f"{render.slugify(d)}.html"
        assert page.is_file() and f'href="departments/{render.slugify(d)}.html"' in month["index"], d
        text = page.read_text(encoding="utf-8")
        assert f"CSF-leak imaging audit: {html.escape(department_name(d, {}))}" in text
        own = orders.filter(pl.col("ordering_department") == d)
        evaluated = own.filter(pl.col("verdict").is_in(["appropriate", "inappropriate", "review"]))
        row = _table(_section(text, "groups"), "attribution")[0]
        assert [_int(x) for x in row[1:5]] == [
            own.height,
            evaluated.height,
            own.filter(pl.col("verdict") == "inappropriate").height,
            own.filter(pl.col("verdict") == "review").height,
        ], d
        assert _int(row[5]) == cases.filter(pl.col("first_imaging_department") == d).height
        if evaluated.height:  # the headline is this department's orders, not the hospital's
            head = _table(_section(text, "headline"), "headline")
            inappropriate = next(r for r in head if r[0].startswith("Inappropriate orders"))
            assert (_int(inappropriate[2]), _int(inappropriate[3])) == (
                evaluated.filter(pl.col("verdict") == "inappropriate").height,
                evaluated.height,
            )


def test_a_department_that_placed_no_order_counts_its_second_view_cases_in_words_that_agree(month):
    """Interventional Radiology does procedures and orders no imaging: its page says how many cases belong to it
    by the second view, in agreement with the number ('1 case belongs ... its orders', not '1 cases belong')."""
    cases = month["cases"]
    sentences = {}
    for d in cases["department"].drop_nulls().unique().to_list():
        page = month["out"] / "csf_leak" / "departments" / f"{render.slugify(d)}.html"
        text = re.sub(r"\s+", " ", _text(_section(page.read_text(encoding="utf-8"), "headline")))
        if "placed no audited imaging order" in text:
            n = cases.filter(pl.col("department") == d).height
            case = "1 case belongs here" if n == 1 else f"{n:,} cases belong here"
            assert case in text and ("its orders are" if n == 1 else "their orders are") in text, (d, text)
            sentences[d] = n
    assert 1 in sentences.values(), sentences  # the demo month has such a page (Interventional Radiology)
    assert not re.search(r"\b1 cases\b|\b1 case belong\b", month["report"])


def test_attrition_subtracts_each_unit_once(month):
    rows = pl.read_csv(month["out"] / "csf_leak" / "attrition.csv").to_dicts()
    steps = [r for r in rows if r["kind"] == "step"]
    for unit in ("procedures", "orders"):
        chain = [r for r in steps if r["unit"] == unit]
        checked = 0
        for a, b in zip(chain, chain[1:], strict=False):
            left = [r for r in rows if r["kind"] == "exclusion" and r["step_order"] == a["step_order"] and r["unit"] == unit]
            if b["step_order"] != a["step_order"] + 1 or not left:
                continue  # siblings (flagged and review orders), not a step with exclusions
            assert a["count"] - sum(r["count"] for r in left) == b["count"], (a["step"], b["step"])
            checked += 1
        assert checked >= 2, unit


def test_reason_denominators_match_their_measure_and_overlap_is_said(month):
    head = _text(_section(month["report"], "headline"))
    not_excluded = month["orders"].filter(pl.col("verdict") != "excluded").height
    assert f"Not evaluable · N = {not_excluded:,} orders: audited orders not excluded" in head
    evaluated = month["orders"].filter(pl.col("verdict").is_in(["appropriate", "inappropriate", "review"])).height
    assert f"Inappropriate · N = {evaluated:,} orders: evaluated orders" in head
    multi = month["orders"].filter((pl.col("verdict") == "inappropriate") & pl.col("reasons").str.contains("|", literal=True))
    if multi.height:
        assert "an order can carry more than one reason" in head


def test_hours_never_read_past_the_verdict(month):
    book = Workbook(month["out"] / "csf_leak" / "case_list.xlsx")
    rows = book.rows("Cases")
    timed = [r for r in rows if r["Time after procedure"] is not None]
    assert timed
    column = list(rows[0]).index("Time after procedure")
    # a number (hours x 100 + minutes) its format shows as '71 h 59 min': sorted as text, 100 h came before 71 h
    assert {c["format"] for (i, j), c in book.cells("Cases").items() if i and j == column} == {TIME_AFTER_FORMAT}
    for r in timed:
        shown = abs(int(r["Time after procedure"]))
        minutes = shown // 100 * 60 + shown % 100
        if r["Reason codes"] and "premature" in r["Reason codes"]:
            assert minutes < 72 * 60 and r["Hours after procedure"] < 72, r
    listed = re.findall(r'<td class="num">(\d+) h (\d+) min</td>', _section(month["report"], "cases"))
    assert listed


# two sentences or clauses run together: a template's line break after a block tag is trimmed (trim_blocks), so
# "quartiles 80.0-126.6 h);{% endif %}" and the next line printed "h);1 first ordered". Citations keep their
# "2024;21(11S)" and numbers their "10,205": neither has a letter or a bracket before the mark.
RUN_TOGETHER = re.compile(r"[a-z)\]%][;,][A-Za-z0-9]|[a-z)]\.[A-Z][a-z]")


def test_the_abbreviations_are_spelled_out_in_the_methods(month):
    """ "CSF" and "DSM" were never spelled out in the report (a rule's title reads "Myelography (DSM or conventional)")."""
    methods = _text(month["report"][month["report"].index("<h3>Definitions</h3>") :])
    assert "Abbreviations : CSF, cerebrospinal fluid; DSM, digital subtraction myelography;" in methods


def test_the_run_start_is_said_in_utc_beside_the_site_times(month):
    """The run's start printed as "2026-12-03T07:08:03+00:00" among site-local clinical times, unmarked."""
    starts = re.findall(r"started (\S+ \S+ \S+)", _text(month["report"]))
    assert len(starts) == 2 and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC[;·]?", s) for s in starts), starts


def test_no_page_runs_two_sentences_together(month):
    found = []
    for page in sorted(month["out"].rglob("*.html")):
        text = re.sub(r"<(script|style|svg)\b.*?</\1>", "", page.read_text(encoding="utf-8"), flags=re.S)
        for node in re.findall(r">([^<]+)<", text):
            node = html.unescape(node)
            found += [(page.name, node[max(0, m.start() - 30) : m.end() + 20]) for m in RUN_TOGETHER.finditer(node)]
    assert found == []


def test_every_rate_and_the_citations_name_no_repository_file(month):
    found = []
    for path in month["out"].rglob("*"):
        if not path.is_file() or path.suffix == ".pdf":
            continue
        if path.suffix == ".xlsx":
            texts = [b.decode("utf-8", "replace") for b in Workbook(path).files.values()]
        elif path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            texts = [" ".join(frame[c].cast(pl.String).drop_nulls().to_list()) for c in frame.columns]
        else:
            texts = [path.read_text(encoding="utf-8", errors="replace")]
        found += [f"{path.name}: {m.group(0)}" for t in texts for m in REPO_FILE_NAME.finditer(t)]
    assert found == []
    methods = _text(_section(month["report"], "methods"))
    assert (
        "ACR Appropriateness Criteria, Imaging of Suspected Intracranial Hypotension. "
        "J Am Coll Radiol 2024;21(11S):S396-S412, doi:10.1016/j.jacr.2024.08.020." in methods
    )
    assert re.search(r"CSF-06 inappropriate premature", methods)


def test_parquet_outputs_keep_types(month):
    orders = pl.read_parquet(month["out"] / "csf_leak" / "audited_orders.parquet")
    assert orders.schema["ordered_at"] == pl.Datetime("us", "UTC") and orders.schema["index_at"] == pl.Datetime("us", "UTC")
    assert orders.schema["ordered_at_local"] == pl.Datetime("us")
    cases = pl.read_parquet(month["out"] / "csf_leak" / "cases.parquet")
    assert cases.schema["index_local_date"] == pl.Date and cases.schema["first_imaging_at"] == pl.Datetime("us", "UTC")
    text = month["orders"].filter(pl.col("ordered_at").is_not_null())["ordered_at"].head(5).to_list()
    typed = orders.filter(pl.col("ordered_at").is_not_null())["ordered_at"].head(5).dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_list()
    assert typed == text  # the same instants; the CSV keeps ISO text


# ----------------------------------------------------------------------------- charts


def test_charts_read_as_percent_with_department_names(month):
    report = month["report"]
    charts = re.findall(r'<svg role="img" aria-label="([^"]+) chart"(.*?)</svg>', report, flags=re.S)
    assert len(charts) >= 5
    for name, svg in charts:
        if name != "overall-hours":
            assert re.search(r">\d+(\.\d+)?%<", svg), name  # a percent axis, not 0.15
    dept = next(svg for name, svg in charts if name == "dept-rates")
    # every snake_case department key is drawn by its display name (title case by default), never raw
    keys = {k for k in month["orders"]["ordering_department"].drop_nulls().to_list() if "_" in k}
    assert keys and any(f">{department_name(k, {})}" in dept for k in keys)
    assert not any(k in dept for k in keys)
    ticks = [float(t) for t in re.findall(r">(\d+(?:\.\d+)?)%</text>", dept)]
    # fitted to the data (the departments' rates and 95% intervals), not a fixed 0 to 100%
    evaluated = month["orders"].filter(pl.col("verdict").is_in(["appropriate", "inappropriate", "review"]))
    per = evaluated.group_by("ordering_department").agg(
        (pl.col("verdict") == "inappropriate").sum().alias("n"), pl.len().alias("N")
    )
    highest = float(wilson_interval(per["n"].to_numpy(), per["N"].to_numpy())[1].max())
    step = ticks[1] - ticks[0]
    assert highest * 100 <= max(ticks) < highest * 100 + 2 * step
    trend = _section(report, "trend")
    assert ("bad news: worse than usual" in trend) or ("good news: better than usual" in trend) or "common-cause" in trend


# ----------------------------------------------------------------------------- workbook


def test_workbook_is_a_review_form(month):
    book = Workbook(month["out"] / "csf_leak" / "case_list.xlsx")
    assert book.sheet_names[:2] == ["Cases", "Providers"]
    rows = book.rows("Cases")
    assert len(rows) == month["orders"].height
    header = list(rows[0])
    for title in ("Case", "Patient key", "Procedure date", "Ordered (site time)", "Time after procedure", "Verdict"):
        assert title in header
    assert header.index("Reviewer agrees?") < header.index("Rules")
    assert {"Reviewer comment", "Reviewer", "Review date"} <= set(header)
    cells = book.cells("Cases")
    date_col, time_col = header.index("Procedure date"), header.index("Ordered (site time)")
    assert cells[(1, date_col)]["number"] > 40000 and cells[(1, date_col)]["format"] == "yyyy-mm-dd"  # a real date
    assert cells[(1, time_col)]["format"] == "yyyy-mm-dd hh:mm"
    sheet = book.xml("Cases")
    assert '<dataValidation type="list"' in sheet and "agree,disagree,unsure" in sheet
    assert sheet.count("<cfRule") == 5  # verdict colours
    assert 'orientation="landscape"' in sheet and 'fitToHeight="0"' in sheet and 'paperSize="9"' in sheet
    assert '<pane xSplit="2" ySplit="1"' in sheet and "<autoFilter " in sheet
    assert book.defined_names.get("_xlnm.Print_Titles", "").endswith("$1:$1")  # header row on every printed page
    assert "_xlnm.Print_Area" in book.defined_names
    for (_, _), cell in cells.items():  # no text starts as a live formula
        assert not (cell["text"] or "").startswith(("=", "+", "-", "@", "\t", "\r")), cell


def test_the_workbook_says_the_period_is_provisional_as_the_report_does(month):
    """The month is provisional (later data can still change its verdicts): the report says so on its first page; a
    reviewer working in the workbook read nothing of it and could review verdicts that are still to change."""
    start = month["report"].index('<div class="warning" role="note"><strong>Provisional.')
    banner = _text(month["report"][start : month["report"].index("</div>", start)])
    final_from = re.search(r"reaches (\d{4}-\d{2}-\d{2})", banner).group(1)
    cells = Workbook(month["out"] / "csf_leak" / "case_list.xlsx").cells("Explanation")
    status = [cells[(i, 1)]["text"] for (i, j), c in cells.items() if j == 0 and c["text"] == "Period status"]
    assert len(status) == 1 and status[0].startswith("Provisional. The loaded data runs through "), status
    assert f"once the loaded data reaches {final_from}, " in status[0], (status, final_from)
    # in the page's words (one home: the banner's partial), the report's Methods named as such
    div = month["report"][start : month["report"].index("</div>", start)]
    page = " ".join(html.unescape(re.sub(r"<[^>]+>", "", div)).split())
    assert status[0] == page.replace("see Methods", "see the report's Methods"), (status, page)


def test_the_printed_case_list_names_its_columns_as_the_workbook_does(month):
    """A reviewer reads the printed case list beside the workbook: the procedure's date and department, and the time
    after it, carry the workbook's headers. The printed list said 'Case date · the department where the index
    procedure was done' (six lines in a narrow column) and 'After index' for the workbook's 'Procedure date',
    'Procedure department' and 'Time after procedure'."""
    cases = _section(month["report"], "cases")
    table = cases[cases.index('<table class="cases">') :]
    head = [_text(c).strip() for c in re.findall(r"<th[^>]*>(.*?)</th>", table[: table.index("</thead>")], flags=re.S)]
    workbook = list(Workbook(month["out"] / "csf_leak" / "case_list.xlsx").rows("Cases")[0])
    assert head[1] == "Procedure date · Procedure department" and head[3] == "Time after procedure", head
    assert {"Procedure date", "Procedure department", "Time after procedure"} <= set(workbook)


def test_the_providers_below_the_threshold_are_summed_in_plain_words(month):
    """'(17 evaluated orders (...), 4 counted by inappropriate orders' read as if orders were counted by orders: the
    sentence says what the funnel's n counts, in its measure's own words, and the numbers are the page's."""
    text = re.sub(r"\s+", " ", _text(_section(month["report"], "providers")))
    evaluated = month["orders"].filter(pl.col("verdict").is_in(["appropriate", "inappropriate", "review"]))
    inappropriate = evaluated.filter(pl.col("verdict") == "inappropriate").height
    assert re.search(r"(All \d[\d,]*|Both) providers had fewer than", text)  # this month: every provider below the threshold
    assert "counted by" not in text
    assert f"(together N = {evaluated.height:,}, n = {inappropriate:,}: orders with verdict inappropriate)" in text, text


def test_workbook_providers_header_prints_whole(month):
    """The Providers sheet's headers are measure names in narrow columns: each column holds its header's longest
    word (bold, about 0.9 of a width unit a character) and the header row is as high as the words wrap. LibreOffice
    printed 'Inappropria' over 'te orders: n' and cut 'study: n' off the first header (seen in the demo month)."""
    import textwrap

    book = Workbook(month["out"] / "csf_leak" / "case_list.xlsx")
    cells, sheet = book.cells("Providers"), book.xml("Providers")
    width = max(c for _, c in cells) + 1
    header = [cells[(0, j)]["text"] for j in range(width)]
    assert "Inappropriate orders: n" in header and "Leak cases whose first imaging was the right study: n" in header
    cols = re.findall(r'<col min="(\d+)" max="(\d+)" width="([0-9.]+)"', sheet)
    widths = {k: float(w) for a, b, w in cols for k in range(int(a), int(b) + 1)}
    lines = 1
    for j, text in enumerate(header):
        chars = widths[j + 1] * 0.9
        assert max(len(word) for word in text.split()) <= chars, (text, widths[j + 1])
        lines = max(lines, len(textwrap.wrap(text, int(chars), break_long_words=False)))
    height = re.search(r'<row r="1"[^>]* ht="([0-9.]+)"', sheet)
    assert height is not None and float(height.group(1)) >= 15 * lines, (height, lines)


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_workbook_prints_landscape_in_libreoffice(month, tmp_path):
    shutil.copy(month["out"] / "csf_leak" / "case_list.xlsx", tmp_path / "case_list.xlsx")
    subprocess.run(
        [
            "soffice",
            "--headless",
            f"-env:UserInstallation={(tmp_path / 'profile').as_uri()}",
            "--convert-to",
            "pdf",
            "case_list.xlsx",
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=300,
        check=True,
    )
    data = (tmp_path / "case_list.pdf").read_bytes()
    sizes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert sizes and all(float(w) > float(h) for w, h in sizes)  # landscape pages
