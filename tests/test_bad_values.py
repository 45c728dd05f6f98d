"""A corpus of hostile values in otherwise good extracts, each with its exact outcome, through the real CLI.

The sibling of test_bad_inputs.py for values that parse but must not act: spreadsheet
formulas in free text (neutralised in every CSV and in the workbook, raw in Parquet),
mathtext in a department name (plain chart labels), control characters (shown, not
obeyed, in the report and the workbook), a department and a provider id as long as the ingest
allows (cut on the pages, whole in the workbook), a department with a Cyrillic letter among Latin
ones (its letter shown as a code) and impossible ages (nulled with a reason).
The verdicts stay exactly the generator's ground truth.
"""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import polars as pl
import pytest
from conftest import DX_HEADER, ORDER_HEADER, PROC_HEADER, run_cli, write_csv, write_small_input

from pipeline.formula_guard import restore, starts_formula
from pipeline.report.controls import _OTHER_CLASS, _PATTERN, _SCRIPTS, CONTROLS, visible
from pipeline.report.names import printed
from pipeline.synth import generate
from pipeline.synth.audit_scenarios import ground_truth

KEY = {"ORDER_AUDIT_PSEUDONYM_KEY": "bad-values-test-key"}
MATHTEXT_DEPARTMENT = "ER $\\notacommand$"
RLO = "\u202e"
ESC, BEL = "\x1b", "\x07"
ZWSP = "\u200b"
# as long as a department or a provider id may be (contract.LONGEST_TEXT): words, as a damaged export joins them
LONG_DEPARTMENT = ("Department of Interventional Pain Medicine and Spinal Procedures " * 16)[:1000]
LONG_PROVIDER = ("DR-" + "0123456789" * 100)[:1000]
# a page prints their first 80 characters and their length
LONG_DEPARTMENT_PRINTED = (
    "Department of Interventional Pain Medicine and Spinal Procedures Department of I… (1,000 characters; whole in the workbook)"
)
LONG_PROVIDER_PRINTED = "DR-" + "0123456789" * 7 + "0123456… (1,000 characters; whole in the workbook)"
LOOKALIKE = "Neur\u043elogy"  # a Cyrillic о: reads as "Neurology" (neurology's printed name), another department
# a trigger after white space (an import that trims runs it) or in its full-width form (an IME's, some Excels')
HIDDEN_FORMULAS = [" =1+1 space", '\uff1dHYPERLINK("http://evil.example/x")', "\u3000@SUM(1)", "\n+1 line"]
FORMULAS = {
    "indication_text": '=HYPERLINK("http://evil.example/x","click")',
    "order_name": "=cmd|' /C calc'!A0",
    "ordering_provider_id": "@SUM(1+1)*cmd|' /C calc'!A0",
}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict:
    """The issue's input (3000 patients, 3 months, seed 7) with hostile text in it, audited with the gate on."""
    base = tmp_path_factory.mktemp("hostile")
    inp = base / "in"
    generate(inp, patients=3000, months=3, seed=7, start_month="2024-01")
    orders = pl.read_csv(inp / "imaging_orders.csv", infer_schema=False)
    n = pl.int_range(pl.len())
    orders = orders.with_columns(
        # three departments merge into one whose name matplotlib's mathtext would have read as math ($...$): enough
        # orders for its rate to be shown, and so drawn in the department chart
        pl.when(pl.col("ordering_department").is_in(["emergency", "primary_care", "pain_management"]))
        .then(pl.lit(MATHTEXT_DEPARTMENT))
        .when(pl.col("ordering_department") == "neurology")
        .then(pl.lit("=1+1 neurology"))
        # a department name is printed on every page (the report shows a bounded selection of orders)
        .when(pl.col("ordering_department") == "anesthesiology")
        .then(pl.lit(f"anes{BEL} {RLO}ygoloiseht"))
        .when(pl.col("ordering_department") == "neurosurgery")
        .then(pl.lit(LONG_DEPARTMENT))
        .otherwise(pl.col("ordering_department"))
        .alias("ordering_department"),
        *(pl.when(n % 5 == i).then(pl.lit(v)).otherwise(pl.col(c)).alias(c) for i, (c, v) in enumerate(FORMULAS.items())),
    ).with_columns(
        # a right-to-left override that would show "exe.txt" for "txt.exe", and a tab and CR first
        pl.when(n % 7 == 3)
        .then(pl.lit(f"MRI {RLO}exe.txt"))
        # a terminal's clear-screen escape and a bell: control characters XML forbids in a cell or a label
        .when(n % 7 == 5)
        .then(pl.lit(f"MRI {ESC}[2J{BEL}"))
        .otherwise(pl.col("order_name"))
        .alias("order_name"),
        pl.when(n % 17 == 6)
        .then(pl.lit(HIDDEN_FORMULAS[0]))
        .when(n % 19 == 7)
        .then(pl.lit(HIDDEN_FORMULAS[1]))
        .when(n % 23 == 8)
        .then(pl.lit(HIDDEN_FORMULAS[2]))
        .when(n % 29 == 9)
        .then(pl.lit(HIDDEN_FORMULAS[3]))
        # every order of the busiest provider: rated, so in the providers' table and the flagged list
        .when(pl.col("ordering_provider_id") == pl.col("ordering_provider_id").mode().first())
        .then(pl.lit(LONG_PROVIDER))
        .otherwise(pl.col("ordering_provider_id"))
        .alias("ordering_provider_id"),
        pl.when(n % 11 == 4)
        .then(pl.lit("\t+tab first"))
        .when(n % 13 == 5)
        .then(pl.lit("-2+3 minus"))
        .otherwise(pl.col("indication_text"))
        .alias("indication_text"),
    )
    orders.write_csv(inp / "imaging_orders.csv")
    procs = pl.read_csv(inp / "procedures.csv", infer_schema=False)
    # a bad optional value that is itself a formula: the reject list repeats it, neutralised
    procs = procs.with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("=2*3")).otherwise(pl.col("attempts")).alias("attempts"),
        # a zero-width space: a department drawn exactly as "neurology", beside it, is another one, counted apart
        pl.when(pl.col("department") == "interventional_radiology")
        .then(pl.lit(f"neuro{ZWSP}logy"))
        .when(pl.col("department") == "pain_management")
        .then(pl.lit(LONG_DEPARTMENT))
        # beside "neurology", printed "Neurology"
        .when(pl.col("department") == "emergency")
        .then(pl.lit(LOOKALIKE))
        .otherwise(pl.col("department"))
        .alias("department"),
    )
    procs.write_csv(inp / "procedures.csv")
    out = base / "out"
    result = run_cli("run", "--input", inp, "--out", out, "--warehouse", base / "wh.duckdb", env=KEY)
    return {"in": inp, "out": out, "result": result}


def test_hostile_text_runs_to_the_end_with_the_ground_truth_verdicts(hostile):
    result = hostile["result"]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    truth = ground_truth(hostile["in"], "csf_leak", "orders", "ground_truth_orders.csv").fill_null("")
    got = pl.read_parquet(hostile["out"] / "csf_leak" / "audited_orders.parquet")
    assert sorted(truth.select("order_id", "verdict", "reasons").rows()) == sorted(
        got.select("order_id", "verdict", pl.col("reasons").fill_null("")).rows()
    )


def test_no_csv_field_anywhere_starts_a_formula(hostile):
    out = hostile["out"]
    csvs = sorted(out.rglob("*.csv"))
    assert {p.name for p in csvs} >= {"audited_orders.csv", "cases.csv", "attrition.csv", "rejects.csv", "metrics.csv"}
    neutralised = 0
    for path in csvs:
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                for field in row:
                    # a number stays a number ("-72.0" hours); text never starts with a trigger
                    assert not starts_formula(field) or _is_number(field), (path.name, field)
                    neutralised += field.startswith("'") and starts_formula(field[1:])
    assert neutralised > 100  # the formulas were there, and were neutralised rather than dropped


def test_csv_neutralised_text_restores_to_the_raw_parquet_text(hostile):
    out = hostile["out"]
    raw = pl.read_parquet(out / "csf_leak" / "audited_orders.parquet")
    shown = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
    for column in ("order_name", "indication_text", "ordering_provider_id", "ordering_department"):
        assert raw[column].dtype == pl.String
        assert [restore(v) for v in shown[column].to_list()] == raw[column].to_list(), column
    assert FORMULAS["order_name"] in raw["order_name"].to_list()  # Parquet keeps the raw text
    assert "'" + FORMULAS["order_name"] in shown["order_name"].to_list()
    assert {"'" + f for f in HIDDEN_FORMULAS} <= set(shown["ordering_provider_id"].to_list())
    metrics = pl.read_csv(out / "csf_leak" / "metrics.csv", infer_schema=False)
    assert "'=1+1 neurology" in metrics["group_key"].to_list()
    assert "=1+1 neurology" in pl.read_parquet(out / "csf_leak" / "metrics.parquet")["group_key"].to_list()
    rejects = pl.read_csv(out / "csf_leak" / "rejects.csv", infer_schema=False)
    assert rejects.filter(pl.col("column_name") == "attempts")["value"].to_list() == ["'=2*3"]


def _workbook_texts(path: Path) -> list[str]:
    """Every text cell of every sheet of an xlsx file (inline and shared strings)."""
    texts = []
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if re.fullmatch(r"xl/(worksheets/sheet\d+|sharedStrings)\.xml", name):
                root = ET.fromstring(z.read(name))
                texts += [t.text or "" for t in root.iter("{http://schemas.openxmlformats.org/spreadsheetml/2006/main}t")]
    return texts


def test_no_workbook_text_cell_starts_a_formula_and_no_control_character_is_raw(hostile):
    texts = _workbook_texts(hostile["out"] / "csf_leak" / "case_list.xlsx")
    assert len(texts) > 1000
    live = [t for t in texts if starts_formula(t) or t.lstrip(" ").startswith(("_x000D_", "_x0009_", "_x000A_"))]
    assert live == []  # xlsx writes CR as _x000D_
    assert "'" + FORMULAS["indication_text"] in texts
    assert {"'" + f for f in HIDDEN_FORMULAS} <= set(texts)
    assert "neuro[U+200B]logy" in texts and not any(ZWSP in t for t in texts)
    assert not any(RLO in t or ESC in t or BEL in t for t in texts)
    assert "MRI [U+202E]exe.txt" in texts
    assert "MRI [U+001B][2J[U+0007]" in texts
    assert "anes[U+0007] [U+202E]ygoloiseht" in texts
    # the whole long names, and the look-alike's letter as its code beside the Latin name it reads as
    assert LONG_DEPARTMENT in texts and LONG_PROVIDER in texts
    assert "Neur[U+043E]logy" in texts and "Neurology" in texts and LOOKALIKE not in texts


def test_mathtext_department_is_a_plain_chart_label(hostile):
    report = (hostile["out"] / "csf_leak" / "report.html").read_text(encoding="utf-8")
    svgs = re.findall(r"<svg.*?</svg>", report, flags=re.S)
    dept_chart = [s for s in svgs if 'aria-label="dept-rates chart"' in s]
    assert dept_chart and MATHTEXT_DEPARTMENT in dept_chart[0]  # drawn, as the text it is


def test_control_characters_are_shown_in_every_page(hostile):
    pages = sorted(hostile["out"].rglob("*.html"))
    assert len(pages) > 3
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert RLO not in text and BEL not in text and ESC not in text and ZWSP not in text, page.name
    report = (hostile["out"] / "csf_leak" / "report.html").read_text(encoding="utf-8")
    assert "anes[U+0007] [U+202E]ygoloiseht" in report
    assert "neuro[U+200B]logy" in report


def test_long_names_are_cut_on_every_page_and_whole_in_the_data(hostile):
    pages = sorted(hostile["out"].rglob("*.html"))
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert LONG_DEPARTMENT[:200] not in text and LONG_PROVIDER[:200] not in text, page.name
    report = (hostile["out"] / "csf_leak" / "report.html").read_text(encoding="utf-8")
    # the procedures' department under two flagged orders' dates; the index's who-the-numbers-belong-to row
    assert report.count(LONG_DEPARTMENT_PRINTED) == 2
    index = (hostile["out"] / "csf_leak" / "index.html").read_text(encoding="utf-8")
    assert index.count(f">{LONG_DEPARTMENT_PRINTED}</a></th>") == 1
    # the busiest provider: its row in the providers' table, and under its flagged orders' department
    assert f'<th scope="row">{LONG_PROVIDER_PRINTED}</th>' in report
    assert f'<span class="sub">{LONG_PROVIDER_PRINTED}</span>' in report
    page = next((hostile["out"] / "csf_leak" / "departments").glob("department-of-interventional-pain-medici-*.html"))
    text = page.read_text(encoding="utf-8")
    assert f"<h1>CSF-leak imaging audit: {LONG_DEPARTMENT_PRINTED}</h1>" in text
    cases = pl.read_parquet(hostile["out"] / "csf_leak" / "cases.parquet")
    assert LONG_DEPARTMENT in cases["department"].to_list()
    orders = pl.read_parquet(hostile["out"] / "csf_leak" / "audited_orders.parquet")
    assert LONG_PROVIDER in orders["ordering_provider_id"].to_list()


def test_a_look_alike_department_is_its_own_with_its_letter_shown(hostile):
    report = (hostile["out"] / "csf_leak" / "report.html").read_text(encoding="utf-8")
    assert LOOKALIKE not in report
    assert '">Neur[U+043E]logy</a></th>' in report and '">Neurology</a></th>' in report  # two rows, two pages
    cases = pl.read_parquet(hostile["out"] / "csf_leak" / "cases.parquet")
    assert {LOOKALIKE, "neurology"} <= set(cases["department"].to_list())  # the data keeps both, as delivered


def test_printed_names_and_mixed_scripts_in_words():
    assert printed("x" * 120) == "x" * 120  # cutting one a little over 80 would print more than it saves
    assert printed("x" * 121) == "x" * 80 + "… (121 characters; whole in the workbook)"
    assert printed("ab " * 40 + "c") == "ab " * 26 + "ab… (121 characters; whole in the workbook)"
    assert visible(LOOKALIKE) == "Neur[U+043E]logy"
    assert visible("Неврология") == "Неврология"  # one script: shown as it is
    assert visible("Неврoлогия") == "Невр[U+006F]логия"  # a Latin o in a Cyrillic word
    assert visible("Клиника Neurology") == "Клиника Neurology"  # two words, each in one script
    assert visible("\u0391\u0392C") == "\u0391\u0392[U+0043]"  # more Greek than Latin letters: the Latin one
    assert visible(f"ne{ZWSP}Neur\u043elogy") == "ne[U+200B]Neur[U+043E]logy"


def test_the_character_classes_find_exactly_their_characters_in_all_of_unicode():
    # written as runs for speed (controls._class): the same set as the characters listed, no more, no fewer
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    found = _PATTERN.findall(every)
    assert len(found) == len(set(CONTROLS)) == len(CONTROLS) and set(found) == set(CONTROLS)
    # the Greek and Cyrillic letters, read by Python's re and by Polars' regex alike
    letters = set("".join(_SCRIPTS.values()))
    assert set(re.findall(_OTHER_CLASS, every)) == letters
    every_one = pl.Series(list(every))
    assert set(every_one.filter(every_one.str.contains(_OTHER_CLASS)).to_list()) == letters
    assert visible("\U000e0020tab\tline\n\x7f") == "[U+E0020]tab\tline\n[U+007F]"


# ------------------------------------------------------------------ impossible ages

AGES = {"PR1": "44", "PR2": "-5", "PR3": "999", "PR4": "1e12", "PR5": "NaN"}


def test_impossible_ages_are_nulled_with_a_reason_and_count_as_age_unknown(tmp_path):
    """DOMAIN.md: a case needs a patient 18 or over, and "not enough data is never silently a pass".
    999, 1e12 and NaN would pass `age >= 18` and -5 would fail it: none is an age, so each is nulled
    (listed in rejects.csv) and the procedure counts as age unknown in the attrition."""
    inp = tmp_path / "in"
    write_small_input(inp)
    header = [*PROC_HEADER[:-1], "patient_age"]  # an age instead of a birth date
    rows = [[pid, f"MRN-{pid}", "2025-06-02 09:00:00", "62323", "Pain clinic", age] for pid, age in AGES.items()]
    write_csv(inp / "procedures.csv", header, rows)
    orders = [[f"O{pid}", f"MRN-{pid}", "2025-06-06 10:00:00", "72148", "Neurology", "G97.1", "completed"] for pid in AGES]
    write_csv(inp / "imaging_orders.csv", ORDER_HEADER, orders)
    write_csv(
        inp / "diagnoses.csv",
        ["patient_id", "diagnosis_code", "recorded_at"],
        [[f"MRN-{p}", "G97.1", "2025-06-03 08:00:00"] for p in AGES],
    )
    out = tmp_path / "out"
    result = run_cli("run", "--input", inp, "--out", out, "--warehouse", tmp_path / "wh.duckdb", env=KEY)
    assert result.returncode == 0, result.stderr
    rejects = pl.read_csv(out / "csf_leak" / "rejects.csv", infer_schema=False).filter(pl.col("column_name") == "patient_age")
    assert sorted(zip(rejects["source_line"].to_list(), rejects["value"].to_list(), strict=True)) == [
        ("3", "'-5"),  # neutralised in the CSV: restore() gives -5
        ("4", "999"),
        ("5", "1e12"),
        ("6", "NaN"),
    ]
    assert set(rejects["reason"]) == {"outside the possible range 0 to 130"}
    assert set(rejects["action"]) == {"value_nulled"}
    assert pl.read_csv(out / "csf_leak" / "cases.csv", infer_schema=False)["case_id"].to_list() == ["PR1"]
    attrition = {r["step"]: r["count"] for r in pl.read_csv(out / "csf_leak" / "attrition.csv", infer_schema=False).to_dicts()}
    assert attrition["Age unknown (no birth date or age, or an impossible age)"] == "4"
    assert attrition["Under the minimum age at the procedure"] == "0"
    assert json.loads((out / "run.json").read_text())["rejects"]["nulled_values"] == 4


BIRTH_DATES = {"PR1": "1970-05-05", "PR2": "9999-05-05", "PR3": "0001-01-01", "PR4": "2025-06-03", "PR5": "2010-01-01"}


def test_birth_dates_no_patient_has_count_as_age_unknown_not_as_a_minor_or_an_adult(tmp_path):
    """A birth date after the procedure made the age negative (9999-05-05: counted under the minimum age, the
    case silently gone) and year 0001 an adult of 2024: both are ages no patient has, so unknown (PR5 is 15)."""
    inp = tmp_path / "in"
    write_small_input(inp)
    rows = [[pid, f"MRN-{pid}", "2025-06-02 09:00:00", "62323", "Pain clinic", born] for pid, born in BIRTH_DATES.items()]
    write_csv(inp / "procedures.csv", PROC_HEADER, rows)
    orders = [[f"O{pid}", f"MRN-{pid}", "2025-06-06 10:00:00", "72148", "Neurology", "G97.1", "completed"] for pid in BIRTH_DATES]
    write_csv(inp / "imaging_orders.csv", ORDER_HEADER, orders)
    write_csv(inp / "diagnoses.csv", DX_HEADER, [[f"MRN-{p}", "G97.1", "2025-06-03 08:00:00"] for p in BIRTH_DATES])
    out = tmp_path / "out"
    result = run_cli("run", "--input", inp, "--out", out, "--warehouse", tmp_path / "wh.duckdb", "--no-validate", env=KEY)
    assert result.returncode == 0, result.stderr
    assert pl.read_csv(out / "csf_leak" / "cases.csv", infer_schema=False)["case_id"].to_list() == ["PR1"]
    attrition = {r["step"]: r["count"] for r in pl.read_csv(out / "csf_leak" / "attrition.csv", infer_schema=False).to_dicts()}
    assert attrition["Age unknown (no birth date or age, or an impossible age)"] == "3"
    assert attrition["Under the minimum age at the procedure"] == "1"
