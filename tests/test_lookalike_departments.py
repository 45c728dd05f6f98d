"""departments.name.lookalike: department names that read as one and are two (pipeline/quality/lookalikes.py).

Hand-built src_* tables on an in-memory DuckDB, the check run as the gate runs it (``run_sql_check`` with the
suite's own spec); the last test runs it through the CLI: the log, run.json, the report and the workbook.
"""

from __future__ import annotations

import datetime as dt
import json
import unicodedata

import duckdb
import pytest
from markupsafe import escape

from pipeline.quality import lookalikes, validate
from pipeline.quality.sql_checks import run_sql_check

CHECK = "departments.name.lookalike"
SPEC = next(s for s in validate.load_suite("imaging_orders")["sql_checks"] if s["check_id"] == CHECK)
PARAMS = validate.resolve_params({"now": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)})
O_CYRILLIC, E_CYRILLIC, NU_GREEK, OMICRON_GREEK = "\u043e", "\u0435", "\u039d", "\u03bf"


def _check(orders: list[str], procedures: list[str] | None = None):
    con = duckdb.connect()
    con.execute("CREATE TABLE src_imaging_orders (order_id VARCHAR, ordering_department VARCHAR)")
    for i, d in enumerate(orders):
        con.execute("INSERT INTO src_imaging_orders VALUES (?, ?)", [f"O{i}", d])
    existing = {"src_imaging_orders"}
    if procedures is not None:
        con.execute("CREATE TABLE src_procedures (procedure_id VARCHAR, department VARCHAR)")
        for i, d in enumerate(procedures):
            con.execute("INSERT INTO src_procedures VALUES (?, ?)", [f"P{i}", d])
        existing.add("src_procedures")
    r = run_sql_check(con, SPEC, existing, PARAMS)
    assert r.error is None, r.error
    return r


def _shown(r) -> tuple:
    return r.status, r.violated_count, r.denominator, r.sample_keys, r.note


def test_a_cyrillic_letter_in_a_latin_name_beside_its_twin_is_named_with_its_code():
    r = _check(["Neurology", f"Neur{O_CYRILLIC}logy", "Neurology", "Cardiology", None])
    assert r.severity == "warning" and r.table == "src_imaging_orders" and r.sample_key == "department names"
    assert _shown(r) == (
        "failed",
        1,
        3,
        ["Neur[U+043E]logy (imaging_orders.ordering_department) reads as Neurology (imaging_orders.ordering_department)"],
        None,
    )
    # the query the result names lists the pair itself (Data Docs show it)
    con = duckdb.connect()
    con.execute("CREATE TABLE src_imaging_orders AS SELECT unnest(['Neurology', 'Neur\u043elogy']) AS ordering_department")
    assert con.execute(r.violations_sql).fetchall() == [
        (f"Neur{O_CYRILLIC}logy", "imaging_orders.ordering_department", "Neurology", "imaging_orders.ordering_department")
    ]


def test_a_twin_across_the_two_department_columns_and_a_name_in_both():
    r = _check(["Neurology", "Radiology"], procedures=[f"N{E_CYRILLIC}urology", "Radiology"])
    assert _shown(r) == (
        "failed",
        1,
        3,
        ["N[U+0435]urology (procedures.department) reads as Neurology (imaging_orders.ordering_department)"],
        None,
    )
    both = _check([f"Neur{O_CYRILLIC}logy", "Neurology"], procedures=[f"Neur{O_CYRILLIC}logy"])
    assert both.sample_keys == [
        "Neur[U+043E]logy (imaging_orders.ordering_department and procedures.department) reads as Neurology "
        "(imaging_orders.ordering_department)"
    ]


def test_greek_letters_too_and_two_disguised_names_of_one_name_count_twice():
    greek = _check([f"{NU_GREEK}eur{OMICRON_GREEK}logy", "Neurology"])
    assert _shown(greek)[:4] == (
        "failed",
        1,
        2,
        ["[U+039D]eur[U+03BF]logy (imaging_orders.ordering_department) reads as Neurology (imaging_orders.ordering_department)"],
    )
    # no Latin twin: the two disguises read as each other; both pass for another name, the pair is named once
    # (in code point order: a Latin e before a Cyrillic one)
    two = _check([f"Neur{O_CYRILLIC}logy", f"N{E_CYRILLIC}urology"])
    assert _shown(two)[:4] == (
        "failed",
        2,
        2,
        ["Neur[U+043E]logy (imaging_orders.ordering_department) reads as N[U+0435]urology (imaging_orders.ordering_department)"],
    )


def test_case_is_folded_a_disguise_in_capitals_is_a_twin_too():
    r = _check([f"NEUR{O_CYRILLIC.upper()}LOGY", "Neurology"])
    assert _shown(r)[:4] == (
        "failed",
        1,
        2,
        ["NEUR[U+041E]LOGY (imaging_orders.ordering_department) reads as Neurology (imaging_orders.ordering_department)"],
    )


def test_a_disguised_name_without_a_twin_is_no_pair_but_a_note():
    r = _check([f"Neur{O_CYRILLIC}logy", "Cardiology"])
    assert _shown(r) == (
        "passed",
        0,
        2,
        [],
        "1 department name with Latin and Cyrillic or Greek letters in one word, reading as no other department: "
        "Neur[U+043E]logy (imaging_orders.ordering_department) (no look-alike pair; the pages show such letters as "
        "codes)",
    )


@pytest.mark.parametrize(
    "names",
    [
        ["Neurology", "Cardiology", "Radiology"],  # all Latin
        ["NEUROLOGY", "Neurology", "neurology"],  # case alone: no look-alike letter, the page shows the difference
        ["Неврология", "Neurology"],  # a name in Cyrillic beside one in Latin: two names, both real
        ["Ορθοπαιδική", "Orthopedics", "Νευρολογία"],  # Greek names
        [f"Neur{O_CYRILLIC}surgery", "Neurology"],  # a disguise, but of no name here: a note, no pair
        ["Neurology Неврология", "Neurology"],  # two scripts in one name, each word in one
        ["ENT", "ЕNТ-2", "Neurology"],  # a twin once mapped must be the whole name
        ["Neur\u043blogy", "Neurlogy"],  # Cyrillic л passes for no Latin letter
    ],
)
def test_names_that_differ_for_real_raise_no_warning(names):
    r = _check(names)
    assert (r.status, r.violated_count, r.sample_keys) == ("passed", 0, [])


def test_no_department_table_rows_pass():
    assert _shown(_check([], procedures=[])) == ("passed", 0, 0, [], None)


def test_a_name_with_a_control_character_is_shown_escaped():
    r = _check([f"Neur{O_CYRILLIC}logy\u202e", "Neurology\u202e"])
    assert r.sample_keys == [
        "Neur[U+043E]logy\\u202e (imaging_orders.ordering_department) reads as Neurology\\u202e "
        "(imaging_orders.ordering_department)"
    ]


def test_the_map_turns_cyrillic_and_greek_letters_into_basic_latin_ones():
    scripts = {unicodedata.name(c).split()[0] for c in lookalikes.LOOKALIKE}
    assert scripts == {"CYRILLIC", "GREEK"}
    assert all(v.isascii() and v.isalpha() and len(v) == 1 for v in lookalikes.LOOKALIKE.values())
    # a capital maps to a capital, a small letter to a small one
    assert all(k.isupper() == v.isupper() for k, v in lookalikes.LOOKALIKE.items())


# ----------------------------------------------------------------------------------------- through the CLI


def test_a_run_names_the_pair_in_its_log_run_json_and_report(tmp_path):
    from conftest import ORDER_HEADER, run_cli, write_csv, write_small_input
    from xlsx_xml import Workbook  # noqa: PLC0415

    inp = write_small_input(tmp_path / "in")
    write_csv(
        inp / "imaging_orders.csv",
        ORDER_HEADER,
        [
            ["O1", "MRN-1", "2025-06-06 10:00:00", "72156", "Neurology", "G97.1", "completed"],
            ["O2", "MRN-1", "2025-06-06 10:05:00", "72157", f"Neur{O_CYRILLIC}logy", "G97.1", "completed"],
            ["O3", "MRN-1", "2025-06-06 10:10:00", "72158", "Neurology", "G97.1", "completed"],
            ["O4", "MRN-2", "2025-06-04 09:00:00", "72148", "Emergency", "", "completed"],
        ],
    )
    out = tmp_path / "out"
    r = run_cli("run", "--input", inp, "--out", out)
    assert r.returncode == 0, r.stderr
    pair = "Neur[U+043E]logy (imaging_orders.ordering_department) reads as Neurology (imaging_orders.ordering_department)"
    [line] = [line for line in r.stderr.splitlines() if CHECK in line]
    assert line == (
        f"order-audit: data-quality warning {CHECK} [src_imaging_orders] 1 of 4 fail it (e.g. {pair}). "
        f"The check: {SPEC['description']}"
    )
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    [check] = [c for c in info["data_quality"] if c["check_id"] == CHECK]
    assert (check["status"], check["violated_count"], check["denominator"], check["sample_keys"]) == ("failed", 1, 4, [pair])
    assert check["sample_key"] == "department names" and check["severity"] == "warning"
    # the report's data-quality table: one row, a warning whose rows stay (amber)
    report = (out / "csf_leak" / "report.html").read_text(encoding="utf-8")
    assert f'<tr class="dq-warning"><td><code>{CHECK}</code></td><td>src_imaging_orders</td><td>warning</td>' in report
    # and the pair itself under the check's description, escaped like any value (a committee corrects the name)
    assert f'{escape(SPEC["description"])}<br><span class="cite">Found: {escape(pair)}</span></td></tr>' in report
    # the workbook's Methods sheet says it whole
    cells = Workbook(out / "csf_leak" / "case_list.xlsx").cells("Explanation")
    explained = {cells[(i, 0)]["text"]: cells.get((i, 1), {}).get("text") for i, j in cells if j == 0}
    assert f"{SPEC['description']} Found: {pair}" in explained["Data quality"]


def test_the_pages_print_names_and_months_found_never_a_rows_key_or_value():
    from pipeline.quality.result import printed_examples

    def check(sample_key, status="failed"):
        return {"status": status, "sample_key": sample_key, "sample_keys": ["A", "B"]}

    assert printed_examples(check("department names")) == ["A", "B"]
    assert printed_examples(check("month")) == ["A", "B"]
    # a passed check names nothing; an order's or a patient's key, or a column's values (a value may be a patient
    # id), stay in the log and run.json for the data team
    assert printed_examples(check("department names", status="passed")) == []
    for key in ("order_id", "patient_id", "source_line", "order_code", "unit:step", None):
        assert printed_examples(check(key)) == []
