"""Open the rendered report in a real headless Chromium: no console messages, charts present.

Chromium comes from the system packages (CI: `apt-get install -y --no-install-recommends chromium`
in .ci/run). Console messages are read from Chromium's own log (`--enable-logging=stderr --v=0`
prints every console message as `INFO:CONSOLE...`); a positive control proves the capture works.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from pipeline.report import render
from pipeline.report.measure import build_metrics
from tests import fixtures_marts as fx

CHROMIUM = render.find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (apt-get install -y chromium); CI installs it in .ci/run",
)
CONSOLE = re.compile(r":CONSOLE[^\]]*\]\s*(.*)")


def _open(url: str, profile: Path) -> tuple[str, list[str]]:
    """Load a page headless; return (DOM after load, console messages)."""
    cmd = [
        CHROMIUM,
        *render.CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=3000",
        "--dump-dom",
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [m.group(1) for m in CONSOLE.finditer(proc.stderr)]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    con = fx.build_fixture(n_cases=12)
    out = tmp_path_factory.mktemp("site")
    render.render_outputs(con, out, fx.run_info(), build_metrics(con))
    return out


def test_console_capture_works(tmp_path):
    page = tmp_path / "control.html"
    page.write_text('<!DOCTYPE html><html><body><script>console.error("control-error")</script></body></html>')
    _, messages = _open(page.as_uri(), tmp_path / "profile")
    assert any("control-error" in m for m in messages), messages


@pytest.mark.parametrize("page", ["report.html", "index.html", "department"])
def test_pages_load_clean_with_charts(site, page, tmp_path):
    path = next((site / "departments").glob("script-*.html")) if page == "department" else site / page
    dom, messages = _open(path.as_uri(), tmp_path / "profile")
    assert messages == [], messages
    assert "</html>" in dom
    assert "<script" not in dom.lower()  # the hostile department name stayed text
    assert "alert(1)" in dom  # ...and is shown, as text
    if page != "index.html":
        charts = re.findall(r'<svg[^>]*class="chart"', dom)
        assert len(charts) >= 3, len(charts)
        assert dom.count("<path") > 20  # the SVGs were parsed into drawing elements


def _page_width(path: Path, window: int, tmp_path: Path) -> tuple[int, int, int, int]:
    """``path`` opened in a window ``window`` px wide: the page's width (what scrolls sideways), the window's, the
    width of the case list's Why column (0 without a case list), and how far the narrowest departments' or providers'
    table falls short of its box's width (0 without one)."""
    measure = (
        "const why = document.querySelector('table.cases tr.case-start td:nth-child(8)');"
        "const short = [...document.querySelectorAll('table.groups')].map("
        "t => Math.round(t.parentElement.clientWidth - t.getBoundingClientRect().width));"
        "document.getElementById('out').textContent = document.documentElement.scrollWidth + ' ' + innerWidth + ' '"
        " + (why ? Math.round(why.getBoundingClientRect().width) : 0) + ' ' + Math.max(0, ...short);"
    )
    page = path.with_name(f"measured-{path.name}")
    page.write_text(
        path.read_text(encoding="utf-8").replace("</body>", f'<pre id="out">-</pre><script>{measure}</script></body>', 1),
        encoding="utf-8",
    )
    cmd = [CHROMIUM, *render.CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={window},900"]
    proc = subprocess.run([*cmd, "--virtual-time-budget=3000", "--dump-dom", page.as_uri()], capture_output=True, text=True)
    page.unlink()
    shown = re.search(r'<pre id="out">(\d+) (\d+) (\d+) (\d+)</pre>', proc.stdout)
    assert shown is not None, proc.stderr[-2000:]
    return int(shown.group(1)), int(shown.group(2)), int(shown.group(3)), int(shown.group(4))


@pytest.mark.parametrize("window", [500, 900, 1024])
@pytest.mark.parametrize("page", ["report.html", "index.html", "department"])
def test_a_narrow_screen_never_scrolls_the_page_sideways(site, page, window, tmp_path):
    """A phone or a tablet: the page is no wider than the window; a wider table scrolls inside itself. The whole
    page scrolled sideways, headings and notes with it: the CSF-leak report was 1,061 px wide in a 1,024 px window
    (its departments table) and twice a phone's width (the headline's 95% CI off the screen); in a 900 px window the
    case list's Why column was 143 px wide, and the committee's month was 993 px wide (its data-quality table)."""
    path = next((site / "departments").glob("script-*.html")) if page == "department" else site / page
    width, inner, why, short = _page_width(path, window, tmp_path)
    assert width <= inner, (width, inner)
    # the departments' and providers' tables scroll in a box as wide as the page and fill it: made blocks to scroll,
    # they were as wide as their content, short of the page's width on a tablet
    assert short <= 1, short
    # the case list scrolls in its own box at a readable width: shrunk to a phone's, its Why column was 92 px wide and
    # a row 470 px tall
    assert page == "index.html" or why >= 200, why


def test_pdf_prints(site, tmp_path):
    pdf = render.write_pdf(site / "report.html", tmp_path / "report.pdf")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 10_000


def test_every_label_and_marker_is_drawn_whole(tmp_path):
    """Chromium's own text metrics: every label and marker of each kind of chart lies inside its picture
    (room for names and tick labels is estimated from their length; a name cut at the edge is lost)."""
    import numpy as np  # noqa: PLC0415 - only this test builds chart inputs
    import polars as pl  # noqa: PLC0415

    from pipeline.report import charts  # noqa: PLC0415

    names = ["Pain Management", "Neurology", "Emergency", "ENT"]  # the longest name sets the room: cut at 0.56 em
    rows = pl.DataFrame(
        {"label": names, "rate": [0.1, 0.2, 0.3, 1.0], "ci_low": [0.05, 0.1, 0.2, 0.5], "ci_high": [0.2, 0.3, 0.4, 1.0]}
    )
    funnel = pl.DataFrame({"group_key": ["a", "b"], "denominator": [9_400, 12], "rate": [0.2, 1.0]})
    months = pl.DataFrame({"period": [f"{2024 + m // 12}-{m % 12 + 1:02d}" for m in range(24)], "rate": [0.5] * 23 + [1.0]})
    months = months.with_columns(centre=pl.lit(0.5), ucl=pl.lit(0.9), lcl=pl.lit(0.1), outside=pl.col("rate") > 0.9)
    svgs = [
        charts.p_chart_svg(months, "Trend", "trend"),
        charts.interval_svg(rows, "By department", "dept-rates", 0.2),
        charts.funnel_svg(funnel, 0.2, "Funnel", "funnel"),  # thousands of orders: "10,000" at the axis' end
        charts.histogram_svg(np.array([1.0, 350.0]), 72, "Hours", "hours", "hours", 12, "h"),
        # the tail's label "≥ 168 h" and its count at the right edge
        charts.histogram_svg(np.array([1.0, 350.0]), 72, "Hours", "hours-tail", "hours", 12, "h", tail_from=168),
    ]
    assert _outside_the_picture(svgs, tmp_path) == "[]"


def test_long_titles_and_department_names_are_drawn_whole(tmp_path):
    """A 90-character department name and a title of three lines' length lie inside the picture (cut at the
    end with an ellipsis, or wrapped), in Chromium's own text metrics."""
    import polars as pl  # noqa: PLC0415 - only the chart tests build chart inputs

    from pipeline.report import charts  # noqa: PLC0415

    long_name = "Department of Interventional Neuroradiology and Minimally Invasive Spine Procedures, Ann B"
    rows = pl.DataFrame({"label": [long_name, "ENT"], "rate": [0.2, 0.3], "ci_low": [0.1, 0.2], "ci_high": [0.3, 0.4]})
    rows = rows.with_columns(small=pl.Series([True, False]))
    title = "Leak cases whose first imaging was the right study, by the month of their index procedure " * 4
    months = pl.DataFrame({"period": ["2026-05", "2026-06"], "rate": [0.1, 0.2]})
    months = months.with_columns(centre=pl.lit(0.15), ucl=pl.lit(0.3), lcl=pl.lit(0.0), outside=pl.lit(False))
    svgs = [charts.interval_svg(rows, title, "dept-rates", 0.25), charts.p_chart_svg(months, title, "trend")]
    assert _outside_the_picture(svgs, tmp_path) == "[]"


def _outside_the_picture(svgs: list[str], tmp_path: Path) -> str:
    """The charts on a page 1100 px wide in Chromium: every text and circle not wholly inside its picture (JSON)."""
    page = tmp_path / "chart.html"
    measure = (
        "const out = []; for (const svg of document.querySelectorAll('svg')) { const box = svg.getBoundingClientRect();"
        " for (const e of svg.querySelectorAll('text, circle')) { const b = e.getBoundingClientRect();"
        "  if (b.left < box.left || b.top < box.top || b.right > box.right || b.bottom > box.bottom)"
        "   out.push(svg.getAttribute('aria-label') + ': ' + (e.textContent || 'circle')); } }"
        "document.getElementById('out').textContent = JSON.stringify(out);"
    )
    page.write_text(
        f'<!DOCTYPE html><html><body style="width:1100px">{"".join(svgs)}<pre id="out">-</pre>'
        f"<script>{measure}</script></body></html>"
    )
    dom, messages = _open(page.as_uri(), tmp_path / "profile")
    assert messages == [], messages
    shown = re.search(r'<pre id="out">(.*?)</pre>', dom, flags=re.S)
    assert shown is not None
    return shown.group(1)


def _printed_pages(tmp_path: Path, body: str) -> list[str]:
    """``body`` under the report's own style sheet, printed by the report's PDF writer: each page's text."""
    import shutil  # noqa: PLC0415 - only the printing tests read the PDF back

    from pipeline.resources import reports_dir  # noqa: PLC0415

    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext (poppler-utils) is not installed")
    style = (reports_dir() / "style.css").read_text(encoding="utf-8")
    page = tmp_path / "print.html"
    page.write_text(f"<!DOCTYPE html><html><head><style>{style}</style></head><body><main>{body}</main></body></html>")
    pdf = render.write_pdf(page, tmp_path / "print.pdf")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return text.split("\f")


def _printed_each_alone(tmp_path: Path, bodies: list[str]) -> list[list[str]]:
    """Each of ``bodies`` (each opening with the word "Filler", found nowhere else) printed as ``_printed_pages``
    prints one: all in one document, each from the top of a page of its own (a forced break before it), so laid
    out as if alone, with one Chromium start instead of one a body. Each body's pages' text, in order."""
    breaks = '<div style="break-before: page"></div>'
    pages = _printed_pages(tmp_path, breaks.join(bodies))
    starts = [i for i, page in enumerate(pages) if "Filler" in page]
    assert len(starts) == len(bodies), pages  # each began a page, and the pages part by body
    return [pages[start:end] for start, end in zip(starts, [*starts[1:], len(pages)], strict=True)]


def test_printed_heading_stays_with_its_chart_and_the_department_key_is_shown(tmp_path):
    """A heading and its lead paragraph near the foot of a page move to the next page with their chart (they were
    left alone at the foot); the department chart's caption (its key) is printed, other captions are not."""
    svg = '<svg class="chart" viewBox="0 0 1000 250" width="1000" height="250"><rect width="1000" height="250"/></svg>'
    body = (
        '<div style="height: 150mm">Filler</div>'
        f'<section id="timing"><h2>Hours to imaging</h2><p>Nine cases with imaging.</p><figure class="chart-figure">{svg}'
        "<figcaption>Histogram caption</figcaption></figure></section>"
        f'<section id="groups"><h2>Departments</h2><figure class="chart-figure">{svg}'
        "<figcaption>dotted line: hospital rate; hollow: low reliability</figcaption></figure></section>"
    )
    pages = _printed_pages(tmp_path, body)
    assert "Filler" in pages[0] and "Hours to imaging" not in pages[0] and "Nine cases" not in pages[0]
    assert "Hours to imaging" in pages[1] and "Nine cases" in pages[1]
    printed = "".join(pages)
    assert "dotted line: hospital rate; hollow: low reliability" in printed and "Histogram caption" not in printed


def _split_or_outside_its_cell(html: str, selector: str, width: int, tmp_path: Path) -> tuple[int, list[str]]:
    """``html`` opened ``width`` px wide: how many elements ``selector`` finds, and the texts of those whose text is on
    more than one line or runs past the right edge of their table cell (the text's own boxes: a cell's too)."""
    measure = (
        f"const found = document.querySelectorAll('{selector}'); const out = [];"
        " for (const a of found) { const cell = a.closest('td').getBoundingClientRect();"
        "  const text = document.createRange(); text.selectNodeContents(a); const box = text.getBoundingClientRect();"
        "  if (text.getClientRects().length !== 1 || box.right > cell.right + 0.5) out.push(a.textContent); }"
        " document.getElementById('out').textContent = found.length + ' ' + JSON.stringify(out);"
    )
    page = tmp_path / "page.html"
    page.write_text(
        html.replace("<body>", f'<body style="width:{width}px">', 1).replace(
            "</body>", f'<pre id="out">-</pre><script>{measure}</script></body>', 1
        ),
        encoding="utf-8",
    )
    dom, messages = _open(page.as_uri(), tmp_path / "profile")
    assert messages == [], messages
    shown = re.search(r'<pre id="out">(\d+) (.*?)</pre>', dom, flags=re.S)
    assert shown is not None, dom[-500:]
    return int(shown.group(1)), json.loads(shown.group(2))


@pytest.mark.parametrize("width", [1000, 1400])
def test_a_rule_id_in_the_case_list_is_never_split(site, tmp_path, width):
    """The case list's rule column: each rule id on one line and inside its cell, a page 1000 px (an A4 landscape
    print is about 1050 px) or 1400 px wide. Ids were split at their hyphen, 'CSF-' over '07', in the printed
    demo month and on screen."""
    count, split = _split_or_outside_its_cell(
        (site / "report.html").read_text(encoding="utf-8"), "table.cases td.rule a", width, tmp_path
    )
    assert count > 0 and split == []


def test_printed_paragraph_is_not_split_across_pages(tmp_path):
    """A two-line note under a heading, before a table, printed wherever the page ends near it: both lines on one
    page (Chromium broke inside it, leaving "and the note says so." alone atop the next page, rather than break
    the heading's or the note's break-after: avoid)."""
    words = " ".join(f"word{i}" for i in range(40))
    table = "<table><thead><tr><th>Step</th></tr></thead><tbody>" + "<tr><td>row</td></tr>" * 30 + "</tbody></table>"
    fillers = range(160, 186, 2)  # the foot of the page falls on the heading, then on each line of the note
    bodies = [
        f'<div style="height: {filler_mm}mm">Filler</div>'
        f'<section id="attrition"><h2>Attrition</h2><p class="note">NOTESTART {words} {words} and the note says '
        f"NOTEEND.</p>{table}</section>"
        for filler_mm in fillers
    ]
    for filler_mm, pages in zip(fillers, _printed_each_alone(tmp_path, bodies), strict=True):
        with_end = [page for page in pages if "NOTEEND" in page]
        assert len(with_end) == 1 and "NOTESTART" in with_end[0], (filler_mm, pages)


def test_a_printed_footnote_is_never_cut_through_its_line(tmp_path):
    """The low-reliability footnote under a table, printed wherever the page ends near it: its line whole on one page.
    Its negative top margin (it sits close under its table on screen) let Chromium cut the line through at the foot
    of the page, the top half there and the bottom half atop the next (the all-months CSF report's risk factors)."""
    table = '<div class="risk-grid"><table><tbody>' + "<tr><td>row</td></tr>" * 8 + "</tbody></table></div>"
    note = '<p class="footnote">FOOTSTART wide wave view every way FOOTEND</p>'
    fillers = range(140, 176, 1)  # the foot of the page falls on the table's last rows, then on the footnote
    printed = _printed_each_alone(
        tmp_path, [f'<div style="height: {mm}mm">Filler</div>{table}{note}<p>after</p>' for mm in fillers]
    )
    cut = []
    for filler_mm, pages in zip(fillers, printed, strict=True):
        whole = [page for page in pages if "FOOTSTART wide wave view every way FOOTEND" in page]
        if len(whole) != 1:
            cut.append(filler_mm)
    assert cut == []


def test_the_printed_flagged_count_by_department_is_never_split(tmp_path):
    """The flagged cases' count by department (a row a department) printed wherever the page ends near it: every row
    on one page, under the header. 2026-04's low back pain report printed two departments at a page's foot and the
    third alone atop the next."""
    rows = "".join(f'<tr><td>DEPT{i}</td><td class="num">{i}</td><td class="num">{i}</td></tr>' for i in range(6))
    table = (
        '<p>FLAGGED 9 of the 13 episodes with an audited order have an inappropriate order.</p><table class="narrow'
        ' flagged-departments"><thead><tr><th>Department</th><th class="num">Flagged episodes</th><th class="num">'
        f"Listed</th></tr></thead><tbody>{rows}</tbody></table><p>Patients appear only as keyed pseudonyms.</p>"
    )
    fillers = range(150, 180, 3)  # the foot of the page falls before, in, then after the table
    printed = _printed_each_alone(tmp_path, [f'<div style="height: {mm}mm">Filler</div>{table}' for mm in fillers])
    split = []
    for filler_mm, pages in zip(fillers, printed, strict=True):
        holding = [page for page in pages if "DEPT" in page]
        if len(holding) != 1 or not all(f"DEPT{i}" in holding[0] for i in range(6)):
            split.append(filler_mm)
    assert split == []


def _reasons_table(groups: int, rows_per_group: int) -> str:
    """A table shaped as the report's orders by reason: under its heading, a header, then per verdict a head row (a
    table body of its own) and its rules, each with a line of explanation under its name."""
    bodies = []
    for g in range(groups):
        rows = "".join(
            f'<tr><td class="rule">RULE{g}{r}</td><th scope="row">Reason {g}{r}<br><span class="sub">Imaging was'
            " ordered before the guideline says it helps; conservative care comes first.</span></th>"
            '<td class="num">1</td><td class="num">10</td><td class="num">10.0%</td><td>1.8% – 40.4%</td></tr>'
            for r in range(rows_per_group)
        )
        bodies.append(
            f'<tbody class="group-head"><tr class="group"><th colspan="6">Verdict {g} · N = 10 orders</th></tr></tbody>'
            f'<tbody>{rows}<tr><td colspan="6" class="sub">No order this period: a rule or two.</td></tr></tbody>'
        )
    return (
        '<h3>REASONS Orders by reason</h3><table class="reasons"><thead><tr><th>Rule</th><th>Reason</th>'
        '<th class="num">n</th><th class="num">N</th><th class="num">Rate</th><th>95% CI</th></tr></thead>'
        f"{''.join(bodies)}</table><p>after</p>"
    )


def test_a_printed_table_that_fits_on_a_page_is_never_split(tmp_path):
    """Any table shorter than a page (here one shaped as the orders by reason), printed wherever the page ends near
    it: every row on one page, with its heading. The CSF-leak report of 2026-04 printed the orders by reason's
    inappropriate rules at page 1's foot and the rest of the table atop page 2; the rule is the style sheet's, for
    every table, not one table's."""
    table = _reasons_table(groups=4, rows_per_group=3)
    fillers = range(40, 180, 10)  # the foot of the page falls after, in, then before the table
    printed = _printed_each_alone(tmp_path, [f'<div style="height: {mm}mm">Filler</div>{table}' for mm in fillers])
    split = []
    for filler_mm, pages in zip(fillers, printed, strict=True):
        holding = [page for page in pages if "RULE" in page]
        whole = len(holding) == 1 and "REASONS" in holding[0]
        if not whole or not all(f"RULE{g}{r}" in holding[0] for g in range(4) for r in range(3)):
            split.append(filler_mm)
    assert split == []


@pytest.mark.parametrize("kind", ["cases", "rules", "dq", "attrition"])
def test_a_printed_table_longer_than_a_page_starts_where_it_is_reached(tmp_path, kind):
    """The tables whose rows can run past a page (the case list, the rules, the data-quality checks, the attrition)
    are not kept whole: a table longer than a page kept whole is moved to a new page by Chromium all the same, the
    foot of the page before it left empty, and then split. It starts under what comes before it, and each page it
    continues on repeats its header."""
    rows = "".join(f"<tr><td>ROW{i:02d}</td><td>a row of the table</td></tr>" for i in range(70))
    table = f'<table class="{kind}"><thead><tr><th>HEADCELL</th><th>What</th></tr></thead><tbody>{rows}</tbody></table>'
    pages = [page for page in _printed_pages(tmp_path, f'<div style="height: 100mm">Filler</div>{table}') if page.strip()]
    assert "Filler" in pages[0] and "ROW00" in pages[0], pages[0]
    assert len(pages) == 3 and all("HEADCELL" in page for page in pages), pages


def _grown_table(kind: str, rows: int) -> str:
    """A table whose rows grow with the hospital (``groups``: the departments or providers; ``attribution``), with the
    class the report's macro gives it for that many rows."""
    from pipeline.report.templates import make_env  # noqa: PLC0415

    macros = make_env().get_template("_macros.html").module
    body = "".join(f"<tr><td>DEPT{i:02d}</td><td>a department</td></tr>" for i in range(rows))
    return (
        f'<table class="{kind}{macros.whole_if_few(list(range(rows)))}"><thead><tr><th>HEADCELL</th><th>What</th></tr>'
        f"</thead><tbody>{body}</tbody></table>"
    )


@pytest.mark.parametrize("kind", ["groups", "attribution"])
def test_a_printed_department_table_of_a_few_rows_is_never_split(tmp_path, kind):
    """The departments', providers' and attribution tables split where the page ends (their rows grow with the
    hospital), but one of a few rows prints whole: 2026-04's low back pain report printed Emergency alone at page 3's
    foot and its other two departments and the hospital row atop page 4."""
    fillers = range(150, 190, 4)  # the foot of the page falls after, in, then before the table
    table = _grown_table(kind, rows=4)
    printed = _printed_each_alone(tmp_path, [f'<div style="height: {mm}mm">Filler</div>{table}' for mm in fillers])
    split = [
        mm
        for mm, pages in zip(fillers, printed, strict=True)
        if len(holding := [page for page in pages if "DEPT" in page]) != 1
        or not all(f"DEPT{i:02d}" in holding[0] for i in range(4))
    ]
    assert split == []


@pytest.mark.parametrize("kind", ["groups", "attribution"])
def test_a_printed_department_table_longer_than_a_page_starts_where_it_is_reached(tmp_path, kind):
    """Kept whole, a table longer than a page would first move to a new page, then split all the same."""
    table = _grown_table(kind, rows=70)
    pages = [page for page in _printed_pages(tmp_path, f'<div style="height: 100mm">Filler</div>{table}') if page.strip()]
    assert "Filler" in pages[0] and "DEPT00" in pages[0], pages[0]
    assert len(pages) == 3 and all("HEADCELL" in page for page in pages), pages


def test_the_printed_case_lists_note_stays_with_the_list(tmp_path):
    """The note above the case list (pseudonyms, how time is counted) printed wherever the page ends near it: on the
    page of the list's first rows. In its scrolling box (for phones) the list was no longer the note's next sibling,
    and the demo month's CSF-leak report left the note at a page's foot, the list on the next."""
    rows = "".join(f"<tr><td>CASE{i}</td><td>why</td></tr>" for i in range(8))
    table = (
        '<p class="note">NOTESTART Patients appear only as keyed pseudonyms NOTEEND</p><div class="case-scroll">'
        f'<table class="cases"><thead><tr><th>Case</th><th>Why</th></tr></thead><tbody>{rows}</tbody></table></div>'
    )
    fillers = range(170, 186, 2)  # the foot of the page falls under the note, then on the table's first rows
    printed = _printed_each_alone(tmp_path, [f'<div style="height: {mm}mm">Filler</div>{table}' for mm in fillers])
    apart = []
    for filler_mm, pages in zip(fillers, printed, strict=True):
        with_note = [page for page in pages if "NOTEEND" in page]
        if len(with_note) != 1 or "CASE0" not in with_note[0]:
            apart.append(filler_mm)
    assert apart == []


def test_a_printed_check_result_is_one_line(tmp_path):
    """The data-quality table's result ('rows kept', 'rows set aside') printed on one line beside its severity: the
    narrow column broke 'rows' over 'kept' in the demo month's printed report."""
    description = "order_code is in CPT form or LOINC form; local codes are allowed (they must be in the code map). " * 3
    row = (
        '<tr class="dq-{0}"><td><code>orders.order_code.format</code></td><td>src_imaging_orders</td><td>warning</td>'
        '<td class="status">{1}</td><td class="num">7,395</td><td class="num">100,181</td><td class="num">7.38</td>'
        "<td>{2}</td></tr>"
    )
    rows = row.format("warning", "rows kept", description) + row.format("set_aside", "rows set aside", description)
    text = "".join(_printed_pages(tmp_path, f'<table class="dq"><tbody>{rows}</tbody></table>'))
    assert "rows kept" in text and "rows set aside" in text, text


def test_the_site_index_prints_each_period_on_one_line(deck_runs, tmp_path):
    """The site index's period (its first column) and the date a provisional period becomes final are never broken:
    beside the low back pain audit's long measure headers the column shrank until '2026-04' read '2026-' over '04'
    (the demo month at 1280 px), and the demo's 'provisional until the data reaches 2026-' over '07-13'."""
    measure = (
        "const links = document.querySelectorAll('th[scope=row] a, .provisional .date'); const out = [];"
        " for (const a of links) { if (a.getClientRects().length !== 1) out.push(a.textContent); }"
        " document.getElementById('out').textContent = links.length + ' ' + JSON.stringify(out);"
    )
    index = (Path(deck_runs["runs"]["combined"]["out"]) / "index.html").read_text(encoding="utf-8")
    page = tmp_path / "index.html"
    page.write_text(
        index.replace("<body>", '<body style="width:900px">', 1).replace(
            "</body>", f'<pre id="out">-</pre><script>{measure}</script></body>', 1
        ),
        encoding="utf-8",
    )
    dom, messages = _open(page.as_uri(), tmp_path / "profile")
    assert messages == [], messages
    shown = re.search(r'<pre id="out">(\d+) (.*?)</pre>', dom, flags=re.S)
    assert shown is not None and int(shown.group(1)) >= 3, dom[-500:]  # a period of each audit, a date
    assert shown.group(2) == "[]"


def test_printed_episode_ids_are_whole(deck_runs, tmp_path):
    """The low back pain case list, printed: every episode id (28 characters: the patient key and the date) on one
    line of the PDF. Its column was 9% of the page and the id broke inside itself, 'P64bcc6657d88da' over
    '4-2026-04-15', in the demo month's printed report."""
    import shutil  # noqa: PLC0415 - only the printing tests read the PDF back

    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext (poppler-utils) is not installed")
    report = Path(deck_runs["runs"]["combined"]["out"]) / "low_back_pain" / "report.html"
    ids = sorted(set(re.findall(r"P[0-9a-f]{16}-\d{4}-\d{2}-\d{2}", report.read_text(encoding="utf-8"))))
    assert len(ids) >= 3, ids
    pdf = render.write_pdf(report, tmp_path / "report.pdf")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert [i for i in ids if i not in text] == []


@pytest.mark.parametrize("width", [1000, 1280, 1400])
def test_an_episode_id_on_screen_is_whole_and_inside_its_cell(deck_runs, tmp_path, width):
    """On screen too each episode id is one line and stays inside its own cell (it may not run over the next), and so
    does the verdict 'inappropriate'."""
    report = (Path(deck_runs["runs"]["combined"]["out"]) / "low_back_pain" / "report.html").read_text(encoding="utf-8")
    count, split = _split_or_outside_its_cell(report, "table.cases .case-id", width, tmp_path)
    assert count >= 3 and split == []
    # the verdict beside it: the id's wider column took its room on screen and 'inappropriat' broke over 'e'
    count, split = _split_or_outside_its_cell(report, "table.cases tr.v-inappropriate td.verdict", width, tmp_path)
    assert count >= 3 and split == []


def test_printed_report_ends_on_the_whole_data_quality_and_inputs_block(site, tmp_path):
    """The report's last block, its data quality and inputs, printed wherever the page before it ends: never split, so
    the last page holds the section from its heading on, not the inputs table alone (or under the data-quality
    table's last row), as the demo month's reports ended."""
    report = (site / "report.html").read_text(encoding="utf-8")
    # to its own end: the run's line ends it (the data-quality table's scrolling box is a div inside it)
    block = re.search(r'<div class="provenance">.*?metrics feed schema [^<]*</p>\s*</div>', report, flags=re.S)
    assert block is not None and "Inputs and run" in block.group(0)
    # filler from a third of the page to nearly all of it: the block's end crosses the page's foot on some of them
    heights = range(70, 181, 10)
    bodies = [f'<div style="height: {h}mm">Filler</div><section id="methods">{block.group(0)}</section>' for h in heights]
    split = []
    for height, pages in zip(heights, _printed_each_alone(tmp_path, bodies), strict=True):
        last = next(page for page in pages if "Inputs and run" in page)
        if not re.search(r"^Data quality$", last, flags=re.M) or "Rejected and corrected" not in last:
            split.append(height)
    assert split == []


@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_a_long_accession_number_prints_and_shows_whole(tmp_path, paper):
    """A hospital's order ids as its radiology system writes them (24 characters): each one line in the printed case
    list and on screen, inside its cell. In the order column's 8% one was printed on three lines, 'RAD-ACC-' over
    '200000000009' over '0106' (the committee's month with the synthetic ids made accession numbers). On US Letter
    ([reporting] paper) too: the PDF is Letter, the page's print sheet says so, and the order column holds the ids on
    its narrower page."""
    import shutil  # noqa: PLC0415 - only the printing tests read the PDF back

    from pipeline.report.paper import PAPERS  # noqa: PLC0415

    con = fx.build_fixture(n_cases=6)
    tables = con.sql(
        "SELECT table_name FROM information_schema.columns JOIN information_schema.tables USING (table_name) "
        "WHERE column_name = 'order_id' AND table_type = 'BASE TABLE'"
    ).fetchall()
    for (table,) in tables:  # the marts' views follow their tables
        con.execute(f"UPDATE {table} SET order_id = 'RAD-ACC-2026' || lpad(regexp_replace(order_id, '[^0-9]', '', 'g'), 12, '0')")
    out, run_info = tmp_path / "site", fx.run_info()
    run_info["config"]["reporting"]["paper"] = paper
    render.render_outputs(con, out, run_info, build_metrics(con))
    html = (out / "report.html").read_text(encoding="utf-8")
    assert f"@page {{ size: {PAPERS[paper].css_size}; }}" in html
    ids = sorted(set(re.findall(r"RAD-ACC-2026\d{12}", html)))
    assert len(ids) >= 3, ids
    for width in (1000, 1400):
        count, split = _split_or_outside_its_cell(html, "table.cases .order-id", width, tmp_path)
        assert count >= len(ids) and split == [], (width, split)
    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext (poppler-utils) is not installed")
    pdf = render.write_pdf(out / "report.html", tmp_path / "report.pdf", paper=PAPERS[paper])
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert [i for i in ids if i not in text] == []
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    width, height = map(float, re.search(r"Page size:\s+(\S+) x (\S+) pts", info).groups())
    assert abs(width - PAPERS[paper].width_in * 72) < 1 and abs(height - PAPERS[paper].height_in * 72) < 1, info
