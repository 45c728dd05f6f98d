"""The case-list workbook: the column-wise Cases rows give the very bytes of xlsxwriter's row-by-row path."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import tempfile
import tomllib
import zipfile
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
from xlsx_xml import Workbook

from pipeline.report import sheet_rows, workbook
from pipeline.report.paper import PAPERS

AUDITS = Path(__file__).resolve().parents[1] / "audits"

RUN_INFO = {"run_id": "r1", "period": "2026-10", "rule_set_version": "rules-1", "software_version": "0.0"}
RULES = pl.DataFrame(
    {
        "rule_id": ["CSF-01"],
        "reason_code": ["cancelled"],
        "label": ["Order cancelled"],
        "verdict": ["excluded"],
        "explanation": ["x"],
        "citation": [None],
    },
    schema={c: pl.String for c in ("rule_id", "reason_code", "label", "verdict", "explanation", "citation")},
)
AWKWARD = [
    "plain",
    "a & b < c > d \"quoted\" 'single'",
    " leading space",
    "trailing space ",
    "\ttab first",
    "newline last\n",
    "line\nbreak inside",
    "=1+1",
    '=HYPERLINK("http://x")',
    "http://example.org",
    "123",
    "control \x01 \x08 \x0b \x0c \r \x1f chars",
    "\x0bvertical tab first",
    "literal _x0041_ escape",
    "_x00e9_ at the start",
    "non-char \ufffe \uffff",
    "<r><t>rich-looking</t></r>",
    "<r>starts like rich",
    "<script>alert(1)</script>",
    "\u00a0no-break space first",
    "em space last\u2003",
    "é first",
    "last é",
    "日本語",
    "emoji 😀 inside",
    "😀",
    "\u0085next line first",
    "",
    None,
    "x" * 32767,
    "😀" * 16383,  # 32766 UTF-16 units: within the limit
    "y" * 16384,
]
TOO_LONG = ["before", "x" * 32768, "after", "😀" * 16384]


def _frame(strings: list[str | None]) -> pl.DataFrame:
    n = len(strings)
    floats = [0.1 + 0.2, 121.22, None, -1e-20, 1e17, 12345678.901234567, 0.0, 72.0]
    ints = [1, None, 2, 10**17, -3, 0]
    return pl.DataFrame(
        {
            "case_id": [f"C{i:03d}" if i % 7 else None for i in range(n)],
            "text": strings,
            "hours_since_index": [floats[i % len(floats)] for i in range(n)],
            "episode_number": pl.Series([ints[i % len(ints)] for i in range(n)], dtype=pl.Int64),
            "small_int": pl.Series([i if i % 3 else None for i in range(n)], dtype=pl.Int32),
            "other": list(reversed(strings)),
            # real dates and times, as the case list carries them (index_local_date, ordered_at_local)
            "index_local_date": [None if i % 5 == 4 else dt.date(2024, 1, 1) + dt.timedelta(days=37 * i) for i in range(n)],
            "ordered_at_local": [
                None if i % 6 == 5 else dt.datetime(2025, 3, 9, 1, 59, 59, 999_999) + dt.timedelta(minutes=97 * i, microseconds=i)
                for i in range(n)
            ],
            # long text in a wrapped column: rows get their height
            "explanation": [("why " * (i * 7)).strip() or None for i in range(n)],
        }
    )


def _write(path, frame: pl.DataFrame, monkeypatch, columnwise: bool, share: bool = False) -> bytes:
    """The case list of ``frame``; ``share``: the Cases sheet's repeated texts as shared strings (else all inline,
    the bytes of xlsxwriter's constant_memory writer)."""
    with monkeypatch.context() as m:
        m.setattr(workbook, "SHARE_REPEATED_TEXT", share)
        if not columnwise:  # xlsxwriter's own path throughout: its cells, and its copy of the row file
            m.setattr(sheet_rows, "columnwise_ok", lambda *_: False)
            m.setattr(sheet_rows, "copy_rows_as_bytes", lambda ws: None)
        workbook.write_case_list(path, frame, RULES, RUN_INFO)
    return path.read_bytes()


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(_frame(AWKWARD), id="awkward-values"),
        pytest.param(_frame(["only"]), id="one-row"),
        pytest.param(_frame(AWKWARD + TOO_LONG), id="over-excel-limit"),
        pytest.param(_frame(AWKWARD).with_columns(pl.lit(None, pl.String).alias("case_id")), id="sparse"),
        pytest.param(
            pl.DataFrame({"a": ["x", None, "", "y", None], "b": [None, None, "", "z", ""]}),
            id="blank-rows-in-the-middle-and-last",
        ),
        pytest.param(pl.DataFrame({"a": [None, ""], "b": [None, None]}, schema={"a": pl.String, "b": pl.String}), id="all-blank"),
        pytest.param(pl.DataFrame({"a": []}, schema={"a": pl.String}), id="empty"),
        pytest.param(_frame(AWKWARD * 5), id="repeated-texts"),
    ],
)
def test_columnwise_rows_equal_xlsxwriter_row_by_row(frame, tmp_path, monkeypatch):
    fast = _write(tmp_path / "fast.xlsx", frame, monkeypatch, columnwise=True)
    slow = _write(tmp_path / "slow.xlsx", frame, monkeypatch, columnwise=False)
    if fast != slow:  # say which part differs
        with zipfile.ZipFile(tmp_path / "fast.xlsx") as a, zipfile.ZipFile(tmp_path / "slow.xlsx") as b:
            for name in b.namelist():
                assert a.read(name) == b.read(name), name
    assert fast == slow


def test_repeated_texts_are_shared_strings_with_the_same_cells(tmp_path, monkeypatch):
    """The Cases sheet's repeated texts go to the shared string table (each once); every cell reads as it does
    written inline by xlsxwriter's own row-by-row path, the awkward texts (control characters, spaces to preserve,
    markup, non-ASCII) included. Ids (unique per row) and a column with rich-looking text stay inline."""
    values = [v for v in AWKWARD if v and len(v) < 100 and not v.startswith("<r>")]
    n = len(values) * 6
    frame = pl.DataFrame(
        {
            "case_id": [f"C{i:04d}" for i in range(n)],
            "verdict": [values[i % len(values)] for i in range(n)],
            "explanation": [values[(i * 7) % len(values)] if i % 5 else None for i in range(n)],
            "indication_text": ["<r><t>x</t></r>" if i == 3 else "back pain" for i in range(n)],
            "hours_since_index": [float(i) for i in range(n)],
        }
    )
    _write(tmp_path / "shared.xlsx", frame, monkeypatch, columnwise=True, share=True)
    _write(tmp_path / "inline.xlsx", frame, monkeypatch, columnwise=False)
    shared, inline = Workbook(tmp_path / "shared.xlsx"), Workbook(tmp_path / "inline.xlsx")
    assert shared.cells("Cases") == inline.cells("Cases")
    sheet = shared.xml("Cases")
    assert re.search(r'<c r="B2" s="\d+" t="s"><v>\d+</v></c>', sheet)  # the verdict column, shared
    assert 't="s"' not in "".join(re.findall(r'<c r="[AD]\d+"[^>]*>', sheet))  # ids and the rich-looking text inline
    sst = shared.files["xl/sharedStrings.xml"].decode()
    assert f'uniqueCount="{len(set(values))}"' in sst  # each text once (the explanations' are the verdicts')
    # one reference per shared cell (the last row is written by xlsxwriter itself, inline)
    refs = sheet.count(' t="s"')
    assert f'count="{refs}"' in sst
    assert "xl/sharedStrings.xml" not in inline.files


def test_columnwise_path_is_taken_for_strings_and_numbers():
    assert sheet_rows.columnwise_ok(_frame(AWKWARD), 1)
    assert not sheet_rows.columnwise_ok(_frame(TOO_LONG[:2]), 1)  # truncated, and write_row stops there
    assert not sheet_rows.columnwise_ok(_frame(TOO_LONG[3:]), 1)
    assert not sheet_rows.columnwise_ok(pl.DataFrame({"f": [1.0, float("nan")]}), 1)
    assert not sheet_rows.columnwise_ok(pl.DataFrame({"b": [True]}), 1)


def test_nan_still_refused_and_the_half_written_parts_stay_beside_the_workbook(tmp_path, monkeypatch):
    """xlsxwriter spools rows and parts to files; a write that fails half-way left them in the machine's /tmp,
    where nothing of ours removes them. They go beside the workbook: in a run, its staging folder."""
    system_temp, staging = tmp_path / "system-temp", tmp_path / "staging"
    system_temp.mkdir()
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    with pytest.raises(TypeError):
        workbook.write_case_list(staging / "nan.xlsx", pl.DataFrame({"h": [1.0, float("nan")]}), RULES, RUN_INFO)
    assert not list(system_temp.iterdir())
    left = set(staging.iterdir())
    assert left  # the spooled rows, removed with the staging folder
    path = workbook.write_case_list(staging / "fine.xlsx", pl.DataFrame({"h": [1.0, 2.0]}), RULES, RUN_INFO)
    assert not list(system_temp.iterdir())
    assert set(staging.iterdir()) - left == {path}  # a write that ends well removes its own spool


@pytest.mark.parametrize("columnwise", [True, False])
def test_text_shaped_like_rich_text_xml_is_escaped(tmp_path, monkeypatch, columnwise):
    """xlsxwriter's constant_memory writer passes "<r>...</r>" through raw: free text could break the sheet."""
    hostile = '<r><t>x</t></r><c r="A1"><v>1</v></c><r></r>'
    _write(tmp_path / "wb.xlsx", pl.DataFrame({"indication_text": [hostile, "plain"]}), monkeypatch, columnwise)
    with zipfile.ZipFile(tmp_path / "wb.xlsx") as z:
        sheet = z.read("xl/worksheets/sheet1.xml").decode()
    assert hostile not in sheet
    assert "&lt;r&gt;&lt;t&gt;x&lt;/t&gt;&lt;/r&gt;&lt;c r=" in sheet


def test_text_columns_fit_their_longest_value_and_wrap_past_the_cap():
    """A long id must not run into the next column of the printed sheet (LibreOffice, A4 fitted to width)."""
    sheet = pl.DataFrame(
        {
            "case_id": ["P887c36c140b119c6-2016-10-01", "C1"],  # a low back pain episode id: 28 characters
            "order_id": ["o" * 40, None],
            "patient_key": ["Pk", None],
            "ordered_at_local": [dt.datetime(2025, 3, 10, 10, 30), None],
            "explanation": ["why " * 30, None],
        }
    )
    columns = [
        workbook.Column("Case", 11, ""),
        workbook.Column("Order", 11, ""),
        workbook.Column("Patient key", 17, ""),
        workbook.Column("Ordered", 15, "", "datetime"),
        workbook.Column("Why", 42, "", "wrap"),
    ]
    fitted = workbook.fitted_columns(sheet, columns)
    assert [(c.width, c.style) for c in fitted] == [(29, ""), (30, "wrap"), (17, ""), (17, "datetime"), (42, "wrap")]


def test_the_written_cases_sheet_has_the_fitted_widths_and_row_heights(tmp_path):
    frame = pl.DataFrame({"case_id": ["P887c36c140b119c6-2016-10-01", "C1"], "order_id": ["o" * 40, "O2"]})
    workbook.write_case_list(tmp_path / "w.xlsx", frame, RULES, RUN_INFO)
    with zipfile.ZipFile(tmp_path / "w.xlsx") as z:
        xml = z.read("xl/worksheets/sheet1.xml").decode()
    widths = [float(w) for w in re.findall(r'<col min="\d+" max="\d+" width="([0-9.]+)"', xml)]
    assert widths[:2] == [29.7109375, 30.7109375]  # Case, Order (xlsxwriter adds 0.71)
    assert re.search(r'<row r="2"[^>]* ht="30"', xml)  # the 40-character order id wraps onto a second line
    assert not re.search(r'<row r="3"[^>]* ht=', xml)


def test_the_providers_sheet_lists_each_provider_once_with_counts_percent_rates_and_the_low_reliability_mark(tmp_path):
    from xlsx_xml import Workbook

    providers = pl.DataFrame(
        {
            "group_key": ["DR2", "DR1", "DR1", "=cmd|' /C calc'!A0"],
            "measure_id": ["inappropriate", "inappropriate", "premature", "premature"],
            "numerator": [3, 1, 0, 7],
            "denominator": [40, 5, 25, 30],
            "rate": [0.075, 0.2, None, 7 / 30],
            "ci_low": [0.026, 0.036, None, 0.118],
            "ci_high": [0.199, 0.624, None, 0.409],
        }
    )
    positions = pl.DataFrame({"group_key": ["DR1", "DR2"], "funnel_position": ["above 95% limit", ""]})
    path = workbook.write_case_list(
        tmp_path / "book.xlsx",
        pl.DataFrame({"case_id": ["C1"]}),
        RULES,
        RUN_INFO,
        providers,
        20,
        None,
        positions,
    )
    cells = Workbook(path).cells("Providers")
    assert cells[(0, 0)]["text"] == "Provider" and cells[(0, 12)]["text"] == "Low reliability (N under 20)"
    assert cells[(0, 11)]["text"] == "Funnel position"  # so the providers the report leaves out can be filtered here
    # sorted by provider; a formula-shaped name is text; a measure the provider has no cell of stays blank
    assert [cells[(i, 0)]["text"] for i in (1, 2, 3)] == ["'=cmd|' /C calc'!A0", "DR1", "DR2"]
    dr1, dr2 = 2, 3  # measures sorted by id: inappropriate (columns 1-5), premature (6-10)
    assert cells[(dr1, 1)]["number"] == 1 and cells[(dr1, 2)]["number"] == 5
    assert cells[(dr1, 3)]["number"] == 0.2 and cells[(dr1, 3)]["format"] == "0.0%"
    assert cells[(dr1, 7)]["number"] == 25 and (dr1, 8) not in cells  # no rate: blank, not 0
    assert cells[(dr1, 11)]["text"] == "above 95% limit" and cells[(dr1, 12)]["text"] == "yes"  # N = 5 under 20
    assert (dr2, 6) not in cells and (dr2, 11) not in cells and (dr2, 12) not in cells  # no premature cell; within; reliable
    assert max(r for r, _ in cells) == 3  # one row per provider


def test_wrapped_rows_of_the_other_sheets_are_as_high_as_their_lines(tmp_path):
    # LibreOffice keeps a row one line high and prints its wrapped lines over the next row's: every sheet's
    # wrapped text sets its row height, as the Cases rows do (the Rules sheet printed unreadable before)
    rules = pl.concat([RULES, RULES.with_columns(rule_id=pl.lit("CSF-02"), explanation=pl.lit("a long explanation " * 10))])
    measure = "leak_cases_whose_first_imaging_was_the_right_study"  # its header: 53 characters
    providers = pl.DataFrame(
        {"group_key": ["DR1"], "measure_id": [measure], "numerator": [1], "denominator": [5], "rate": [0.2]}
    ).with_columns(ci_low=pl.lit(0.0), ci_high=pl.lit(0.6))
    path = workbook.write_case_list(tmp_path / "w.xlsx", pl.DataFrame({"case_id": ["C1"]}), rules, RUN_INFO, providers)
    with zipfile.ZipFile(path) as z:
        names = re.findall(r'<sheet name="([^"]+)"', z.read("xl/workbook.xml").decode())
        sheets = {name: z.read(f"xl/worksheets/sheet{i}.xml").decode() for i, name in enumerate(names, start=1)}

    def height(sheet: str, row: int) -> float | None:
        found = re.search(rf'<row r="{row}"[^>]* ht="([0-9.]+)"', sheets[sheet])
        return float(found.group(1)) if found else None

    assert height("Rules", 2) is None  # one line: the default height
    assert height("Rules", 3) == 45  # 190 characters in a 70-character column: three lines
    # the Providers header: the measure's name and ": n", one 53-character word, widens its column to hold it (a
    # word is never split); the row is as high as its tallest wrapped header ('Low reliability (N under 20)')
    assert height("Providers", 1) == sheet_rows.LINE_POINTS * 3
    width = re.search(r'<col min="2" max="\d+" width="([0-9.]+)"', sheets["Providers"])
    assert width is not None and float(width.group(1)) > len(f"{measure}: n")
    assert height("Explanation", 5) == 30  # the patient identifiers' note: two lines at 90 characters


def test_the_explanation_names_the_reviewer_columns_where_they_are(tmp_path):
    """'Fill in the last four columns' sent a reviewer to the sheet's last columns, the codes and keys kept for
    filters; the reviewer's columns end the printed form, in the middle of the sheet on screen."""
    frame = pl.DataFrame({"case_id": ["C1"], "order_id": ["O1"], "verdict": ["excluded"], "reasons": ["cancelled"]})
    path = workbook.write_case_list(tmp_path / "w.xlsx", frame, RULES, RUN_INFO)
    book = Workbook(path)
    header = list(book.rows("Cases")[0])
    assert header == [
        "Case",
        "Order",
        "Verdict",
        "Reviewer agrees?",
        "Reviewer comment",
        "Reviewer",
        "Review date",
        "Reason codes",
    ]
    said = {row["Run id"]: row["r1"] for row in book.rows("Explanation")}
    assert said["Reviewing"] == (
        "Sheet Cases lists every audited order. Fill in the four reviewer columns, D to G (Reviewer agrees? to Review "
        "date, the last columns of the printed form): agreement with the verdict (drop-down), a comment, your name and "
        "the date. Filters are on the header row; the columns after the reviewer's (codes and keys) are there to filter on."
    )


def test_the_providers_sheet_is_as_wide_as_its_funnel_positions_and_provider_ids(tmp_path):
    """'above 95% limit (worse)' in a column 18 wide ran into the next column's 'yes' when LibreOffice printed it."""
    providers = pl.DataFrame(
        {
            "group_key": ["DR1", "PROVIDER-WITH-A-LONG-ID-1"],
            "measure_id": ["inappropriate", "inappropriate"],
            "numerator": [3, 1],
            "denominator": [40, 5],
            "rate": [0.075, 0.2],
            "ci_low": [0.026, 0.036],
            "ci_high": [0.199, 0.624],
        }
    )
    positions = pl.DataFrame(
        {"group_key": ["DR1", "PROVIDER-WITH-A-LONG-ID-1"], "funnel_position": ["", "below 99.8% limit (better)"]}
    )
    path = workbook.write_case_list(
        tmp_path / "w.xlsx", pl.DataFrame({"case_id": ["C1"]}), RULES, RUN_INFO, providers, 20, None, positions
    )
    xml = Workbook(path).xml("Providers")
    widths = [(int(a), int(b), float(w)) for a, b, w in re.findall(r'<col min="(\d+)" max="(\d+)" width="([0-9.]+)"', xml)]
    # provider: 25 characters + 1; the measure's n, N, rate and interval one width (their headers' longest word,
    # 'inappropriate:'); funnel position: 26 + 1 and its indent; the low-reliability mark (xlsxwriter adds 0.71 to each)
    assert widths == [
        (1, 1, 26.7109375),
        (2, 3, 17.28515625),
        (4, 6, 17.28515625),
        (7, 7, 28.7109375),
        (8, 8, 14.7109375),
    ]


def test_the_reviewer_judgement_takes_only_the_listed_words_and_says_which(tmp_path):
    """A reviewer typing "approprate" (or "agreed") is stopped with the words to use; the date column takes dates."""
    frame = pl.DataFrame({"case_id": ["C1", "C2"], "order_id": ["O1", "O2"], "verdict": ["excluded"] * 2, "reasons": [""] * 2})
    xml = Workbook(workbook.write_case_list(tmp_path / "w.xlsx", frame, RULES, RUN_INFO)).xml("Cases")
    rules = re.findall(r"<dataValidation [^>]*>.*?</dataValidation>", xml, flags=re.S)
    assert rules == [
        '<dataValidation type="list" allowBlank="1" showInputMessage="1" showErrorMessage="1" errorTitle="Reviewer agrees?"'
        ' error="Choose agree, disagree or unsure from the list (or leave the cell empty)." promptTitle="Reviewer"'
        ' prompt="agree, disagree or unsure" sqref="D2:D3"><formula1>"agree,disagree,unsure"</formula1></dataValidation>',
        '<dataValidation type="date" operator="greaterThanOrEqual" allowBlank="1" showInputMessage="1" showErrorMessage="1"'
        ' errorTitle="Review date" error="A date, e.g. 2026-07-15" sqref="G2:G3"><formula1>36526</formula1></dataValidation>',
    ]


def test_what_a_reviewer_types_in_the_comment_and_name_columns_stays_text(tmp_path):
    """Columns formatted as text (@): LibreOffice and Excel turned a comment such as "1/2" or "3-4" into a date."""
    frame = pl.DataFrame({"case_id": ["C1"], "order_id": ["O1"], "verdict": ["excluded"], "reasons": [""]})
    book = Workbook(workbook.write_case_list(tmp_path / "w.xlsx", frame, RULES, RUN_INFO))
    header = list(book.rows("Cases")[0])
    spans = re.findall(r'<col min="(\d+)" max="(\d+)"[^>]*style="(\d+)"', book.xml("Cases"))
    cols = {str(c): style for low, high, style in spans for c in range(int(low), int(high) + 1)}
    styles = book.files["xl/styles.xml"].decode()
    ids = re.findall(r'<xf numFmtId="(\d+)"', styles[styles.index("<cellXfs") :])
    formats = dict(re.findall(r'<numFmt numFmtId="(\d+)" formatCode="([^"]*)"', styles)) | {"49": "@", "0": "General"}
    shown = {h: formats[ids[int(cols[str(i + 1)])]] for i, h in enumerate(header)}
    assert shown == {
        "Case": "General",
        "Order": "General",
        "Verdict": "General",
        "Reviewer agrees?": "General",
        "Reviewer comment": "@",
        "Reviewer": "@",
        "Review date": "yyyy-mm-dd",
        "Reason codes": "General",
    }


def test_every_sheet_with_a_header_row_prints_it_on_every_page_and_the_explanation_does_not(tmp_path):
    """The Explanation sheet's first row is the run id, not a header: printed on every page, it stood atop the columns'
    glossary on page 2. Cases, Providers and Rules repeat their header row."""
    import zipfile
    from xml.etree import ElementTree

    path = workbook.write_case_list(tmp_path / "book.xlsx", pl.DataFrame({"case_id": ["C1"]}), RULES, RUN_INFO, None, 20)
    with zipfile.ZipFile(path) as z:
        book = ElementTree.fromstring(z.read("xl/workbook.xml"))
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    names = [s.get("name") for s in book.iterfind("m:sheets/m:sheet", ns)]
    titled = {
        names[int(d.get("localSheetId"))]: d.text
        for d in book.iterfind("m:definedNames/m:definedName", ns)
        if d.get("name") == "_xlnm.Print_Titles"
    }
    assert names[:4] == ["Cases", "Providers", "Explanation", "Rules"]
    assert sorted(titled) == ["Cases", "Providers", "Rules"] and all(t.endswith("$1:$1") for t in titled.values()), titled


def test_a_count_column_is_centred_and_the_run_start_is_said_in_utc():
    """The low back pain Day ("10") right-aligned ran into the next column's order id in print ("10O00100146"); the
    report's run start "2026-12-03T07:08:03+00:00" read as a site time beside the site-local clinical times."""
    from pipeline.report.templates import in_utc

    cols = workbook.case_columns({"days_since_index": ["Day", 6, "Days.", "count", "form"]})
    assert cols["days_since_index"].style == "count"
    assert in_utc("2026-12-03T02:08:03-05:00") == "2026-12-03 07:08:03 UTC"
    assert in_utc("2026-12-03T07:08:03+00:00") == "2026-12-03 07:08:03 UTC"
    assert in_utc("not a time") == "not a time"


def test_the_providers_sheet_has_one_header_row_naming_each_column_in_full(tmp_path):
    """A reviewer's filter, sort or CSV export takes the first row as the header: the measure's name stood over its n
    column only, so each measure's "N", "rate", "95% CI low" and "95% CI high" were three columns of the same name."""
    providers = pl.DataFrame(
        {
            "group_key": ["DR1", "DR1", "DR2"],
            "measure_id": ["inappropriate", "premature", "inappropriate"],
            "numerator": [1, 0, 3],
            "denominator": [5, 25, 40],
            "rate": [0.2, 0.0, 0.075],
            "ci_low": [0.036, 0.0, 0.026],
            "ci_high": [0.624, 0.137, 0.199],
        }
    )
    path = workbook.write_case_list(tmp_path / "w.xlsx", pl.DataFrame({"case_id": ["C1"]}), RULES, RUN_INFO, providers, 20)
    book = Workbook(path)
    cells = book.cells("Providers")
    header = [cells[(0, j)]["text"] for j in range(max(j for _, j in cells) + 1)]
    stats = ["n", "N", "rate", "95% CI low", "95% CI high"]
    assert header == [
        "Provider",
        *(f"inappropriate: {s}" for s in stats),
        *(f"premature: {s}" for s in stats),
        "Low reliability (N under 20)",
    ]
    assert cells[(1, 0)]["text"] == "DR1" and cells[(1, 2)]["number"] == 5  # the data start on the second row
    assert '<autoFilter ref="A1:L3"/>' in book.xml("Providers")
    # a measure's columns one width, its headers in five lines at most: 'Leak cases whose first imaging was the right
    # study: 95% CI high' took ten lines at the width of 'N'
    long = "Leak cases whose first imaging was the right study"
    assert workbook.fitted_header_width([f"{long}: {s}" for s in stats], 10.0, 5) == 17.0
    assert all(workbook.header_lines(f"{long}: {s}", 17.0) <= 5 for s in stats)
    assert workbook.header_lines(f"{long}: 95% CI high", 16.0) > 5


def test_the_time_after_the_index_sorts_as_the_time_does_and_reads_as_before(tmp_path):
    """'Time after procedure' was text: a sort put '100 h 0 min' before '71 h 59 min' and '1 h 5 min before' among
    the hours after. It is a number (hours x 100 + minutes) whose format shows what the report prints, and its column
    is as wide as the longest time it shows (a number wider than its column prints as ###)."""
    minutes = [6000, 4319, -65, None, 60597, 4320, 5, -17220]
    frame = pl.DataFrame({"case_id": [f"C{i}" for i in range(len(minutes))], "minutes_since_index": minutes})
    audit_columns = {"time_after_index": ["Time after procedure", 9, "Time from the procedure to the order.", ""]}
    spec = SimpleNamespace(columns=audit_columns, provider_ids=(), funnel_measure=None, measure=lambda _: None)
    book = Workbook(workbook.write_case_list(tmp_path / "w.xlsx", frame, RULES, RUN_INFO, spec=spec))
    rows = book.rows("Cases")
    numbers = [r["Time after procedure"] for r in rows]
    assert numbers == [10000, 7159, -105, None, 100957, 7200, 5, -28700]
    ordered = sorted(range(len(minutes)), key=lambda i: (minutes[i] is None, minutes[i] or 0))
    assert ordered == sorted(range(len(minutes)), key=lambda i: (numbers[i] is None, numbers[i] or 0))  # sorts as the time
    column = list(rows[0]).index("Time after procedure")
    cells = book.cells("Cases")
    assert {cells[(i, column)]["format"] for i in range(1, len(minutes) + 1) if (i, column) in cells} == {
        '0" h "00" min";0" h "00" min before"'
    }
    # the widest shown: '287 h 00 min before', 19 characters and one apart (xlsxwriter adds 0.71)
    width = re.search(rf'<col min="{column + 1}" max="{column + 1}" width="([0-9.]+)"', book.xml("Cases"))
    assert width is not None and float(width.group(1)) == 20.7109375
    explanation = book.cells("Explanation")
    notes = [explanation[(i, 1)]["text"] for (i, j), c in explanation.items() if j == 0 and c["text"] == "Time after procedure"]
    assert notes == ["Time from the procedure to the order. " + workbook.TIME_AFTER_NOTE]


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_libreoffice_shows_the_time_after_the_index_as_the_report_prints_it(tmp_path):
    """The number's format, read by a spreadsheet: each time shows the report's text (caselist.time_after), a time
    before the index included."""
    from pipeline.report.caselist import time_after

    minutes = [4319, 4320, 5, 0, -65, -17220, 60597]
    frame = pl.DataFrame({"case_id": [f"C{i}" for i in range(len(minutes))], "minutes_since_index": minutes})
    workbook.write_case_list(tmp_path / "w.xlsx", frame, RULES, RUN_INFO)
    subprocess.run(
        [
            "soffice",
            "--headless",
            f"-env:UserInstallation={(tmp_path / 'profile').as_uri()}",
            "--convert-to",
            "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,true",  # the cells as shown
            "w.xlsx",
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=300,
        check=True,
    )
    shown = pl.read_csv(tmp_path / "w.csv", infer_schema=False)["Time after index"].to_list()
    assert shown == frame.select(time_after("minutes_since_index").alias("shown"))["shown"].to_list()
    assert shown[:2] == ["71 h 59 min", "72 h 00 min"] and shown[4] == "1 h 05 min before"


def test_every_data_sheet_keeps_its_header_in_view_and_filters_on_it(tmp_path):
    """The Rules sheet (a rule three or four lines high, two printed pages) had neither: scrolled, its columns had no
    names, and a reviewer could not list the rules of one verdict. Cases, Providers and Rules freeze their header row
    and filter on it; the Explanation, a run's notes, has no header row to keep."""
    providers = pl.DataFrame(
        {"group_key": ["DR1"], "measure_id": ["m"], "numerator": [1], "denominator": [5], "rate": [0.2]}
    ).with_columns(ci_low=pl.lit(0.0), ci_high=pl.lit(0.6))
    book = Workbook(workbook.write_case_list(tmp_path / "w.xlsx", pl.DataFrame({"case_id": ["C1"]}), RULES, RUN_INFO, providers))
    for sheet in ("Cases", "Providers", "Rules"):
        xml = book.xml(sheet)
        assert re.search(r'<pane [^>]*ySplit="1"[^>]*state="frozen"/>', xml), sheet
        assert re.search(r'<autoFilter ref="A1:[A-Z]+\d+"/>', xml), sheet
    assert '<autoFilter ref="A1:F2"/>' in book.xml("Rules")  # the six columns, the one rule
    assert "<pane " not in book.xml("Explanation") and "<autoFilter" not in book.xml("Explanation")


def test_the_providers_text_after_a_rate_is_indented(tmp_path):
    """A rate is right-aligned and the funnel position left-aligned beside it: LibreOffice printed '100.0%within
    limits' (and without a funnel position '100.0%yes'). Both text columns start a character in."""
    providers = pl.DataFrame(
        {"group_key": ["DR1"], "measure_id": ["m"], "numerator": [5], "denominator": [5], "rate": [1.0]}
    ).with_columns(ci_low=pl.lit(0.57), ci_high=pl.lit(1.0))
    positions = pl.DataFrame({"group_key": ["DR1"], "funnel_position": ["within limits"]})
    for with_position in (positions, None):
        path = workbook.write_case_list(
            tmp_path / "w.xlsx", pl.DataFrame({"case_id": ["C1"]}), RULES, RUN_INFO, providers, 20, None, with_position
        )
        book = Workbook(path)
        styles = book.files["xl/styles.xml"].decode()
        xfs = re.findall(r"<xf [^>]*?(?:/>|>.*?</xf>)", styles[styles.index("<cellXfs") :], flags=re.S)
        sheet = book.xml("Providers")
        texts = ["G2", "H2"] if with_position is not None else ["G2"]  # funnel position, low-reliability mark
        for ref in texts:
            style = re.search(rf'<c r="{ref}" s="(\d+)"', sheet)
            assert style is not None and 'indent="1"' in xfs[int(style.group(1))], (ref, with_position is not None)
        assert 'indent="1"' not in xfs[int(re.search(r'<c r="F2" s="(\d+)"', sheet).group(1))]  # the rate: as it was


def test_codes_kept_as_text_are_not_flagged_as_numbers_stored_as_text(tmp_path):
    """A CPT code (72156) is text on purpose: Excel put its green 'number stored as text' mark on every code cell and
    offered to convert it. The Cases sheet's range tells Excel to leave that check alone."""
    frame = pl.DataFrame({"case_id": ["C1", "C2"], "order_code": ["72156", "72148"], "verdict": ["excluded"] * 2})
    book = Workbook(workbook.write_case_list(tmp_path / "w.xlsx", frame, RULES, RUN_INFO))
    header = list(book.rows("Cases")[0])
    last = chr(ord("A") + len(header) - 1)
    assert f'<ignoredErrors><ignoredError sqref="A1:{last}3" numberStoredAsText="1"/></ignoredErrors>' in book.xml("Cases")
    assert book.rows("Cases")[0]["Code"] == "72156"  # still text


def test_the_explanation_says_what_each_providers_column_counts(tmp_path):
    """'Inappropriate orders: N' said which measure, not which orders: the Explanation gives each provider measure's
    numerator and denominator in the report's words, then the funnel position and the low-reliability mark."""
    words = {
        "inappropriate": SimpleNamespace(
            label="Inappropriate orders", numerator="orders with verdict inappropriate", denominator="evaluated orders"
        )
    }
    spec = SimpleNamespace(columns={}, provider_ids=("inappropriate",), funnel_measure="inappropriate", measure=words.get)
    providers = pl.DataFrame(
        {"group_key": ["DR1"], "measure_id": ["inappropriate"], "numerator": [1], "denominator": [5], "rate": [0.2]}
    ).with_columns(ci_low=pl.lit(0.04), ci_high=pl.lit(0.6))
    positions = pl.DataFrame({"group_key": ["DR1"], "funnel_position": ["within limits"]})
    path = workbook.write_case_list(
        tmp_path / "w.xlsx", pl.DataFrame({"case_id": ["C1"]}), RULES, RUN_INFO, providers, 20, spec, positions
    )
    cells = Workbook(path).cells("Explanation")
    rows = [(cells[(i, 0)]["text"], cells[(i, 1)]["text"]) for i in range(max(i for i, _ in cells) + 1)]
    glossary = rows[rows.index(("Providers sheet column", "Meaning")) + 1 :]
    assert glossary == [
        (
            "Inappropriate orders",
            "n: orders with verdict inappropriate. N: evaluated orders. rate: n / N; 95% CI low and high: its Wilson interval.",
        ),
        (
            "Funnel position (inappropriate orders)",
            "Where the provider's rate of inappropriate orders falls on the report's funnel plot: within limits, or above "
            "or below its 95% or 99.8% limit, better or worse by the measure's direction.",
        ),
        ("Low reliability (N under 20)", "yes where any N of the provider is under 20: too few to judge by."),
    ]
    header = [c["text"] for (i, j), c in sorted(Workbook(path).cells("Providers").items()) if i == 0]
    assert [h for h, _ in glossary[1:]] == header[-2:]  # named as the sheet heads them


def test_the_rules_sheet_one_word_columns_are_as_wide_as_their_longest_word(tmp_path):
    """A reason code is one word: 'after_conservative_period' in a column 20 wide ran into its verdict
    ('after_conservative_periodappropriate') when LibreOffice printed the Rules sheet; 'not_evaluable' filled its 13."""
    rules = pl.concat(
        [
            RULES,
            RULES.with_columns(
                rule_id=pl.lit("LBP-06"), reason_code=pl.lit("after_conservative_period"), verdict=pl.lit("not_evaluable")
            ),
        ]
    )
    path = workbook.write_case_list(tmp_path / "w.xlsx", pl.DataFrame({"case_id": ["C1"]}), rules, RUN_INFO)
    xml = Workbook(path).xml("Rules")
    widths = {int(a): float(w) for a, b, w in re.findall(r'<col min="(\d+)" max="(\d+)" width="([0-9.]+)"', xml)}
    # xlsxwriter adds 0.71: rule 10 (its default), reason code 25 + 1, verdict 13 + 1
    assert (widths[1], widths[3], widths[4]) == (10.7109375, 26.7109375, 14.7109375)


def test_hours_after_the_index_show_two_decimals_as_they_are_truncated(tmp_path):
    """'Hours after procedure' had no number format: 96.8 printed beside 96.71 and read as the larger time."""
    frame = pl.DataFrame({"case_id": ["C1", "C2"], "hours_since_index": [96.8, 96.71]})
    audit_columns = dict(tomllib.loads((AUDITS / "csf_leak" / "audit.toml").read_text(encoding="utf-8"))["report"]["columns"])
    spec = SimpleNamespace(
        columns={"hours_since_index": audit_columns["hours_since_index"]},
        provider_ids=(),
        funnel_measure=None,
        measure=lambda _: None,
    )
    book = Workbook(workbook.write_case_list(tmp_path / "w.xlsx", frame, RULES, RUN_INFO, spec=spec))
    column = list(book.rows("Cases")[0]).index("Hours after procedure")
    cells = book.cells("Cases")
    assert [cells[(i, column)]["format"] for i in (1, 2)] == ["0.00", "0.00"]


@pytest.mark.parametrize(("paper", "code"), [(None, "9"), ("a4", "9"), ("letter", "1")])
def test_every_sheet_prints_landscape_on_the_run_s_paper(tmp_path, paper, code):
    """A US site's workbook printed on A4 (paperSize 9) whatever it set: every sheet now prints on ``[reporting]
    paper`` (Letter: 1), as the report and its PDF do; a run.json without the setting (an older run) is A4."""
    info = {**RUN_INFO, "config": {"reporting": {"paper": paper}}} if paper else RUN_INFO
    path = workbook.write_case_list(tmp_path / "book.xlsx", pl.DataFrame({"case_id": ["C1"]}), RULES, info, None, 20)
    with zipfile.ZipFile(path) as z:
        sheets = [z.read(n).decode() for n in sorted(z.namelist()) if n.startswith("xl/worksheets/sheet")]
    assert len(sheets) == 4
    assert all(f'paperSize="{code}"' in s and 'orientation="landscape"' in s for s in sheets)


def test_every_style_an_audit_may_name_has_a_cell_format():
    """audit.toml's [report.columns] styles are checked against audits.COLUMN_STYLES when the folder loads: each has
    its format here (a style without one was a KeyError once the whole run was done)."""
    from pipeline import audits  # noqa: PLC0415

    assert set(audits.COLUMN_STYLES) == set(workbook.STYLE_FORMATS)


# the CSF-leak audit's provider measures: their names head each of the Providers sheet's columns, 18 in all
CSF_PROVIDER_MEASURES = {
    "first_imaging_right": "Leak cases whose first imaging was the right study",
    "inappropriate": "Inappropriate orders",
    "premature": "Premature imaging (< 72 h)",
}


def _wide_providers_book(path: Path, run_info: dict = RUN_INFO) -> Path:
    """A case list whose Providers sheet is the CSF-leak one's: three measures, a funnel position, four providers."""
    words = {m: SimpleNamespace(label=label, numerator="n", denominator="N") for m, label in CSF_PROVIDER_MEASURES.items()}
    spec = SimpleNamespace(
        columns={}, provider_ids=tuple(CSF_PROVIDER_MEASURES), funnel_measure="inappropriate", measure=words.get
    )
    keys = ["DR00002", "DR00022", "DR00042", "DR00048"]
    providers = pl.DataFrame(
        {
            "group_key": [k for k in keys for _ in CSF_PROVIDER_MEASURES],
            "measure_id": list(CSF_PROVIDER_MEASURES) * len(keys),
            "numerator": [1, 3, 0] * len(keys),
            "denominator": [1, 3, 3] * len(keys),
            "rate": [1.0, 1.0, 0.0] * len(keys),
            "ci_low": [0.207, 0.439, 0.0] * len(keys),
            "ci_high": [1.0, 1.0, 0.561] * len(keys),
        }
    )
    positions = pl.DataFrame({"group_key": keys, "funnel_position": ["within limits", "above 95% limit (worse)", "", ""]})
    return workbook.write_case_list(path, pl.DataFrame({"case_id": ["C1"]}), RULES, run_info, providers, 20, spec, positions)


@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_a_sheet_too_wide_for_one_legible_page_prints_across_pages_with_its_first_column(tmp_path, paper):
    """The CSF-leak Providers sheet (18 columns) was fitted to one page wide and printed at 48%, its type 5.3 pt: it is
    fitted to as many pages across as print it at LEGIBLE_SCALE or larger, the provider column and the header row on
    each, the pages across then down. Every sheet prints as many pages tall as its rows need; the others, narrow
    enough (and the Cases sheet's review form, kept one page wide), are fitted to one page wide."""
    path = _wide_providers_book(tmp_path / "book.xlsx", {**RUN_INFO, "config": {"reporting": {"paper": paper}}})
    book = Workbook(path)
    setup = {s: re.search(r"<pageSetup [^>]*/>", book.xml(s)).group(0) for s in ("Cases", "Providers", "Explanation", "Rules")}
    assert all('fitToHeight="0"' in xml and 'orientation="landscape"' in xml for xml in setup.values()), setup
    assert 'fitToWidth="2"' in setup["Providers"] and 'pageOrder="overThenDown"' in setup["Providers"]
    assert all("fitToWidth" not in setup[s] and "pageOrder" not in setup[s] for s in ("Cases", "Explanation", "Rules"))
    names = book.files["xl/workbook.xml"].decode()
    assert '<definedName name="_xlnm.Print_Titles" localSheetId="1">Providers!$A:$A,Providers!$1:$1</definedName>' in names
    widths = [
        float(w) - 0.7109375
        for a, b, w in re.findall(r'<col min="(\d+)" max="(\d+)" width="([0-9.]+)"', book.xml("Providers"))
        for _ in range(int(b) - int(a) + 1)
    ]
    assert len(widths) == 18
    assert workbook.pages_across(widths, PAPERS[paper]) == 2
    assert workbook.pages_across(widths[:6], PAPERS[paper]) == 1  # the provider and one measure: one page


def test_pages_across_counts_whole_columns_and_the_repeated_first():
    page = (PAPERS["a4"].width_in - workbook.SHEET_MARGINS_IN) * 96 / workbook.LEGIBLE_SCALE  # 1,646 px
    assert workbook.column_pixels(10) == 75
    assert workbook.pages_across([10.0] * 21, PAPERS["a4"]) == 1  # 1,575 px
    assert workbook.pages_across([10.0] * 22, PAPERS["a4"]) == 2  # 1,650 px
    # the second page opens with the first column again: 21 of 75 px, then 1 + 20, then 1 + 1
    assert workbook.pages_across([10.0] * 42, PAPERS["a4"]) == 3 and page // 75 == 21


@pytest.mark.skipif(shutil.which("soffice") is None or shutil.which("pdftotext") is None, reason="LibreOffice or poppler missing")
def test_libreoffice_prints_the_providers_sheet_legibly(tmp_path):
    """The CSF-leak workbook printed by LibreOffice: the Providers pages' type at LEGIBLE_SCALE of the Explanation's
    (printed unshrunk) or larger; it was 48%."""
    _wide_providers_book(tmp_path / "w.xlsx")
    subprocess.run(
        ["soffice", "--headless", f"-env:UserInstallation={(tmp_path / 'profile').as_uri()}", "--convert-to", "pdf", "w.xlsx"],
        cwd=tmp_path,
        capture_output=True,
        timeout=300,
        check=True,
    )
    bbox = subprocess.run(["pdftotext", "-bbox", "w.pdf", "-"], cwd=tmp_path, capture_output=True, text=True, check=True)

    def type_size(page: str) -> float:  # the median height of the page's words
        heights = sorted(float(b) - float(a) for a, b in re.findall(r'yMin="([\d.]+)" xMax="[\d.]+" yMax="([\d.]+)"', page))
        return heights[len(heights) // 2]

    pages = bbox.stdout.split("<page ")[1:]
    providers = [type_size(p) for p in pages if "Provider" in p and "DR00022" in p]
    explanation = [type_size(p) for p in pages if ">Rule-set<" in p]
    assert providers and explanation, len(pages)
    assert min(providers) >= workbook.LEGIBLE_SCALE * explanation[0], (providers, explanation)
    assert len(providers) == 2  # two pages across
