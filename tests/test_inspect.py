"""`order-audit inspect`: a site's extract seen before the first run, and the starter config it writes.

The end-to-end test is the promise of issue 12: the test deck exported the way a hospital's
reporting database writes it (tests/site_export.py), then `inspect --write-config`, then
`run --config` with that file and no hand edit, gives the canonical deck's verdicts order
by order; the same for an Excel workbook.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import inspect_writing_config, run_cli
from site_export import export_text, export_workbook

from pipeline.deck import deck_files, write_deck_input
from pipeline.deck import rows_of as _rows
from pipeline.ingest import detect, inspector
from pipeline.ingest.contract import CONTRACT_BY_NAME

COMPARED = ["order_id", "case_id", "verdict", "reasons", "secondary_reasons", "hours_since_index", "ordered_at", "status"]


# ----------------------------------------------------------------------------------------------- units


def test_columns_match_by_name_case_spelling_and_ehr_synonym():
    header = ["ORDER_PROC_ID", "pat_mrn_id", "Ordering DTTM", "Proc Code", "ordering_department", "AUTHRZING_PROV_ID", "X"]
    got = {m.column: (m.source, m.how) for m in inspector.match_columns(CONTRACT_BY_NAME["imaging_orders"], header, {})}
    assert got["order_id"] == ("ORDER_PROC_ID", "synonym")
    assert got["patient_id"] == ("pat_mrn_id", "synonym")
    assert got["ordered_at"] == ("Ordering DTTM", "synonym")
    assert got["order_code"] == ("Proc Code", "synonym")
    assert got["ordering_department"] == ("ordering_department", "name")
    assert got["ordering_provider_id"] == ("AUTHRZING_PROV_ID", "synonym")
    assert got["status"] == (None, "missing")


def test_two_columns_that_fit_equally_are_left_to_a_person():
    header = ["ORDER_ID", "MRN", "PAT_ID", "ORDER_TIME", "CPT_CODE", "DEPT_NAME"]
    found = inspector.match_columns(CONTRACT_BY_NAME["imaging_orders"], header, {"order_code": "CPT_CODE"})
    matches = {m.column: m for m in found}
    assert (matches["patient_id"].how, matches["patient_id"].others) == ("ambiguous", ["MRN", "PAT_ID"])
    assert (matches["order_code"].source, matches["order_code"].how) == ("CPT_CODE", "config")
    assert (matches["order_id"].source, matches["order_id"].how) == ("ORDER_ID", "case")


def _matched(table: str, header: list[str]) -> dict[str, tuple[str | None, str]]:
    return {m.column: (m.source, m.how) for m in inspector.match_columns(CONTRACT_BY_NAME[table], header, {})}


@pytest.mark.parametrize(
    ("ehr", "table", "header", "expected"),
    [
        (  # Clarity PAT_ENC_DX joined to PAT_ENC and EDG: the primary flag as Y/N
            "Epic Clarity",
            "diagnoses",
            ["PAT_MRN_ID", "CURRENT_ICD10_LIST", "CONTACT_DATE", "ENC_TYPE", "PRIMARY_DX_YN", "DX_RANK"],
            {
                "patient_id": ("PAT_MRN_ID", "synonym"),
                "diagnosis_code": ("CURRENT_ICD10_LIST", "synonym"),
                "recorded_at": ("CONTACT_DATE", "synonym"),
                "setting": ("ENC_TYPE", "synonym"),
                "is_principal": ("PRIMARY_DX_YN", "synonym"),
                "diagnosis_rank": ("DX_RANK", "synonym"),
            },
        ),
        (
            "Cerner Millennium",
            "diagnoses",
            ["PERSON_ID", "DX_CODE", "DX_DATE", "ENCNTR_TYPE_CLASS", "IS_PRIMARY", "DIAG_PRIORITY"],
            {
                "patient_id": ("PERSON_ID", "synonym"),
                "diagnosis_code": ("DX_CODE", "synonym"),
                "recorded_at": ("DX_DATE", "synonym"),
                "setting": ("ENCNTR_TYPE_CLASS", "synonym"),
                "is_principal": ("IS_PRIMARY", "synonym"),
                "diagnosis_rank": ("DIAG_PRIORITY", "synonym"),
            },
        ),
        (
            "MEDITECH Data Repository",
            "diagnoses",
            ["UnitNumber", "ICD_CODE", "DX_DATE", "PatientClass", "IS_PRIMARY_DX", "DiagnosisSeqID"],
            {
                "patient_id": ("UnitNumber", "synonym"),
                "diagnosis_code": ("ICD_CODE", "synonym"),
                "recorded_at": ("DX_DATE", "synonym"),
                "setting": ("PatientClass", "synonym"),
                "is_principal": ("IS_PRIMARY_DX", "synonym"),
                "diagnosis_rank": ("DiagnosisSeqID", "synonym"),
            },
        ),
        (
            "other spellings",
            "diagnoses",
            ["MRN", "DX_CODE", "DX_DATE", "Encounter Type", "PRINCIPAL_DX_YN", "DX_SEQ"],
            {
                "patient_id": ("MRN", "synonym"),
                "diagnosis_code": ("DX_CODE", "synonym"),
                "recorded_at": ("DX_DATE", "synonym"),
                "setting": ("Encounter Type", "synonym"),
                "is_principal": ("PRINCIPAL_DX_YN", "synonym"),
                "diagnosis_rank": ("DX_SEQ", "synonym"),
            },
        ),
        (
            "more spellings",
            "diagnoses",
            ["MRN", "DX_CODE", "DX_DATE", "PAT_CLASS", "DX_SEQUENCE"],
            {
                "patient_id": ("MRN", "synonym"),
                "diagnosis_code": ("DX_CODE", "synonym"),
                "recorded_at": ("DX_DATE", "synonym"),
                "setting": ("PAT_CLASS", "synonym"),
                "is_principal": (None, "missing"),
                "diagnosis_rank": ("DX_SEQUENCE", "synonym"),
            },
        ),
        (
            "more spellings",
            "diagnoses",
            ["MRN", "DX_CODE", "DX_DATE", "ENCNTR_TYPE", "DIAGNOSIS_SEQUENCE"],
            {
                "patient_id": ("MRN", "synonym"),
                "diagnosis_code": ("DX_CODE", "synonym"),
                "recorded_at": ("DX_DATE", "synonym"),
                "setting": ("ENCNTR_TYPE", "synonym"),
                "is_principal": (None, "missing"),
                "diagnosis_rank": ("DIAGNOSIS_SEQUENCE", "synonym"),
            },
        ),
        (
            "more spellings",
            "diagnoses",
            ["MRN", "DX_CODE", "DX_DATE", "Encounter Class"],
            {
                "patient_id": ("MRN", "synonym"),
                "diagnosis_code": ("DX_CODE", "synonym"),
                "recorded_at": ("DX_DATE", "synonym"),
                "setting": ("Encounter Class", "synonym"),
                "is_principal": (None, "missing"),
                "diagnosis_rank": (None, "missing"),
            },
        ),
        (
            "more spellings",
            "diagnoses",
            ["MRN", "DX_CODE", "DX_DATE", "CARE_SETTING"],
            {
                "patient_id": ("MRN", "synonym"),
                "diagnosis_code": ("DX_CODE", "synonym"),
                "recorded_at": ("DX_DATE", "synonym"),
                "setting": ("CARE_SETTING", "synonym"),
                "is_principal": (None, "missing"),
                "diagnosis_rank": (None, "missing"),
            },
        ),
        (
            "Epic Clarity",
            "patients",
            ["PAT_MRN_ID", "BIRTH_DATE", "SEX"],
            {"patient_id": ("PAT_MRN_ID", "synonym"), "birth_date": ("BIRTH_DATE", "case"), "sex": ("SEX", "case")},
        ),
        (
            "Epic Caboodle",
            "patients",
            ["PrimaryMrn", "BirthDate", "Sex"],
            {"patient_id": ("PrimaryMrn", "synonym"), "birth_date": ("BirthDate", "spelling"), "sex": ("Sex", "case")},
        ),
        (
            "Cerner Millennium",
            "patients",
            ["PERSON_ID", "BIRTH_DT_TM", "ADMINISTRATIVE_SEX"],
            {
                "patient_id": ("PERSON_ID", "synonym"),
                "birth_date": ("BIRTH_DT_TM", "synonym"),
                "sex": ("ADMINISTRATIVE_SEX", "synonym"),
            },
        ),
        (
            "MEDITECH Data Repository",
            "patients",
            ["UnitNumber", "BirthDateTime", "Gender"],
            {"patient_id": ("UnitNumber", "synonym"), "birth_date": ("BirthDateTime", "synonym"), "sex": ("Gender", "synonym")},
        ),
        (
            "OMOP",
            "patients",
            ["person_id", "birth_datetime", "gender_source_value"],
            {
                "patient_id": ("person_id", "synonym"),
                "birth_date": ("birth_datetime", "synonym"),
                "sex": ("gender_source_value", "synonym"),
            },
        ),
        (
            "a report writer's",
            "patients",
            ["MRN", "DOB", "PAT_SEX"],
            {"patient_id": ("MRN", "synonym"), "birth_date": ("DOB", "synonym"), "sex": ("PAT_SEX", "synonym")},
        ),
        (
            "a report writer's",
            "patients",
            ["Medical Record Number", "Date of Birth"],
            {
                "patient_id": ("Medical Record Number", "synonym"),
                "birth_date": ("Date of Birth", "synonym"),
                "sex": (None, "missing"),
            },
        ),
        (
            "a report writer's",
            "patients",
            ["MRN", "PAT_BIRTH_DATE"],
            {"patient_id": ("MRN", "synonym"), "birth_date": ("PAT_BIRTH_DATE", "synonym"), "sex": (None, "missing")},
        ),
        (
            "Cerner, OMOP and MEDITECH birth dates",
            "procedures",
            ["BIRTH_DT_TM"],
            {"patient_birth_date": ("BIRTH_DT_TM", "synonym")},
        ),
        (
            "Cerner, OMOP and MEDITECH birth dates",
            "procedures",
            ["BIRTH_DATETIME"],
            {"patient_birth_date": ("BIRTH_DATETIME", "synonym")},
        ),
        (
            "Cerner, OMOP and MEDITECH birth dates",
            "procedures",
            ["BirthDateTime"],
            {"patient_birth_date": ("BirthDateTime", "synonym")},
        ),
    ],
)
def test_ehr_spellings_of_the_diagnoses_and_patients_columns(ehr, table, header, expected):
    got = _matched(table, header)
    if table == "procedures":  # one column asked; the others are missing
        got = {c: v for c, v in got.items() if c in expected}
    assert got == expected, ehr


def test_timestamp_formats_are_guessed_with_dates_and_day_month_doubt():
    guess = detect.guess_formats(["4/10/2026 10:00 AM", "12/31/2025 1:05 PM", "4/9/2026", "2026-04-10T10:00:00Z", ""])
    assert guess.formats == ["%m/%d/%Y %I:%M %p", "%m/%d/%Y"] and guess.iso == 1 and guess.unread == []
    assert guess.ambiguous == []  # 4/9/2026 alone could be September 4: 12/31/2025 settles it for the column
    alone = detect.guess_formats(["4/9/2026"])
    assert alone.ambiguous == ["%m/%d/%Y"]  # April 9 or September 4
    detect.settle_day_month([alone, guess])  # another column's 12/31/2025 settles the table's convention
    assert alone.ambiguous == []
    day_first = detect.guess_formats(["31.12.2025 10:00", "01.02.2026 08:30"])
    assert day_first.formats == ["%d.%m.%Y %H:%M"] and day_first.sure
    assert detect.guess_formats(["soon", "later"]).unread == ["soon", "later"]


def test_a_two_digit_year_is_not_read_as_a_year_of_four():
    """%Y took '06' for year 6: '13/06/25 10:00' read as %Y/%m/%d (13 June 25 is day first, two-digit year), as
    many values as %d/%m/%y, and month first won the tie: the starter config read no value right."""
    guess = detect.guess_formats(["06/06/25 10:00", "07/06/25 10:00", "13/06/25 10:00"])
    assert (guess.formats, guess.unread, guess.ambiguous) == (["%d/%m/%y %H:%M"], [], [])
    assert detect.guess_formats(["2025/06/13 10:00"]).formats == ["%Y/%m/%d %H:%M"]  # a year of four still reads


def test_day_month_doubt_covers_every_form_of_a_column():
    """03/07/2025 10:00:00 AM beside 03/07/2025 10:05 AM: the seconds' form had no day-first twin among the
    candidates, so it was taken as month first for sure, and that 'settled' the column: no CHECK."""
    guess = detect.guess_formats(["03/07/2025 10:00:00 AM", "03/07/2025 10:05 AM", "04/07/2025 10:10 AM"])
    assert guess.formats == ["%m/%d/%Y %I:%M %p", "%m/%d/%Y %I:%M:%S %p"] and guess.unread == []
    assert guess.ambiguous == guess.formats
    detect.settle_day_month([guess])
    assert guess.ambiguous == guess.formats  # nothing settles it: still a person's decision


def test_a_value_that_settles_day_first_settles_every_form_of_the_column():
    """14/03/2025 settles day first; 04/03/2025 10:10:30 was still guessed month first (the first of equals) and
    read as 3 April, the column's formats mixing both orders."""
    guess = detect.guess_formats(["07/03/2025 10:00", "14/03/2025 10:05", "04/03/2025 10:10:30"])
    assert guess.formats == ["%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S"] and guess.sure
    # across a table's columns: one that settles day first turns another that leaves it open
    settles, open_ = detect.guess_formats(["14/03/2025 10:05"]), detect.guess_formats(["04/03/2025 10:10:30"])
    assert open_.ambiguous == ["%m/%d/%Y %H:%M:%S"]
    detect.settle_day_month([settles, open_])
    assert open_.formats == ["%d/%m/%Y %H:%M:%S"] and open_.sure
    assert open_.examples == {"%d/%m/%Y %H:%M:%S": "04/03/2025 10:10:30"}
    # columns settled both ways leave the doubt where it is
    month_first, in_doubt = detect.guess_formats(["12/31/2025 10:00"]), detect.guess_formats(["04/03/2025 10:10:30"])
    detect.settle_day_month([settles, month_first, in_doubt])
    assert in_doubt.ambiguous == ["%m/%d/%Y %H:%M:%S"]


def test_every_slashed_form_is_guessed_both_ways():
    """A month-first form without its day-first twin (or the reverse) decides the order by its absence."""
    for forms in (detect.TIMESTAMP_FORMATS, detect.DATE_FORMATS):
        twins = [detect.day_month_twin(f) for f in forms if detect.day_month_twin(f)]
        assert twins and all(t in forms for t in twins)


def test_excel_date_serials_are_named_by_inspect(small_input, tmp_path):
    """45719.375 in a CSV: inspect said 'none needed; reads 0 of 2', no format found nor what the values were."""
    assert detect.guess_formats(["45719.375", "45658"]).excel_serials
    assert not detect.guess_formats(["soon", "45658"]).excel_serials and not detect.guess_formats(["4/9/2026"]).excel_serials
    path = small_input / "procedures.csv"
    pl.read_csv(path, infer_schema=False).with_columns(pl.Series("performed_at", ["45719.375", "45658.375"])).write_csv(path)
    config, lines = inspect_writing_config(small_input, tmp_path)
    at = lines.index("  timestamp  performed_at: no format found; reads 0 of 2")
    assert lines[at + 1 : at + 3] == [
        "             not read, e.g.: '45719.375', '45658.375'",
        f"             CHECK: {detect.EXCEL_SERIALS_FIX}",
    ]
    text = config.read_text(encoding="utf-8")
    assert f"# CHECK: performed_at holds no time a format reads. {detect.EXCEL_SERIALS_FIX}\n" in text


def test_delimiter_and_encoding_guesses(tmp_path):
    lines = ["ORDER_ID|MRN|ORDER_TIME", "O1|M1|4/10/2026 10:00 AM", "O2|M2|4/10/2026, 11:00"]
    assert detect.guess_delimiter(lines, {"orderid", "mrn"}) == ("|", True)
    path = tmp_path / "x.txt"
    path.write_bytes("a|b\r\nNeurología – adultos|x\r\n".encode("cp1252"))
    guess = detect.guess_encoding(path)
    assert (guess.encoding, guess.sure) == ("cp1252", False) and "'í' on line 2" in guess.example
    path.write_text("a|b\nNeurología|x\n", encoding="utf-8")
    assert detect.guess_encoding(path).encoding == "utf-8"


# ----------------------------------------------------------------------------------------------- CLI

CSF_DECK = [f for f in deck_files() if f.audit == "csf_leak"]  # exported the way a reporting database writes it


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("site")
    canonical = base / "canonical"
    write_deck_input(canonical, CSF_DECK)
    return {"base": base, "canonical": canonical, "text": export_text(canonical, base / "text")}


def test_inspect_reports_what_it_found(site):
    r = run_cli("inspect", "--input", site["text"], "--json")
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    orders = found["imaging_orders"]
    assert orders["file"].endswith("ORDER_PROC_EXPORT.txt") and orders["found_by"] == "name hint"
    assert (orders["delimiter"], orders["encoding"]["encoding"]) == ("|", "cp1252")
    assert {c["column"]: c["source"] for c in orders["columns"]}["ordered_at"] == "ORDERING_DTTM"
    (ts,) = orders["formats"]
    assert ts["formats"] == ["%m/%d/%Y %I:%M %p"] and ts["unread"] == 0 and ts["values"] == orders["rows"] - 1
    statuses = {v["value"]: (v["rows"], v["reads_as"]) for v in orders["values"]["status"]}
    assert statuses["Canceled"][1] == "cancelled" and statuses["Sent"][1] == "ordered" and statuses["Final"][1] == "completed"
    assert set(orders["code_systems"]) == {"CPT", "LOINC", "other"}
    unknown = {u["code"]: u for u in orders["unknown_codes"]}
    assert unknown["LCL-NOTMAPPED-9"]["orders"] == 1 and "LCL-DSM" not in unknown  # the site's map knows LCL-DSM
    dx = found["diagnoses"]
    assert dx["formats"][0]["formats"] == ["%m/%d/%Y %I:%M %p", "%m/%d/%Y"]  # bare dates among the timestamps
    text = run_cli("inspect", "--input", site["text"]).stdout
    assert "delimiter  '|'" in text and "'Canceled': 2 rows -> cancelled" in text
    # one order, in the singular (it printed "1 orders")
    (line,) = [line for line in text.splitlines() if "LCL-NOTMAPPED-9" in line]
    assert line.endswith(": 1 order (other form): not evaluable until mapped"), line


def test_write_config_never_overwrites(site, tmp_path):
    target = tmp_path / "cfg"
    target.mkdir()
    (target / "local_code_map.csv").write_text("mine\n")
    r = run_cli("inspect", "--input", site["text"], "--write-config", target / "site.toml")
    assert r.returncode == 1, r.stderr
    assert "local_code_map.csv exists; nothing written" in r.stderr
    assert not (target / "site.toml").exists() and (target / "local_code_map.csv").read_text() == "mine\n"
    (target / "local_code_map.csv").unlink()
    (target / "site.toml").write_text("# mine\n")
    r = run_cli("inspect", "--input", site["text"], "--write-config", target / "site.toml")
    assert r.returncode == 1 and "site.toml exists; nothing written" in r.stderr
    assert (target / "site.toml").read_text() == "# mine\n" and not (target / "local_code_map.csv").exists()


def test_unknown_status_is_left_for_a_person_in_the_starter_config(site, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for p in site["text"].iterdir():
        (d / p.name).write_bytes(p.read_bytes())
    orders = d / "ORDER_PROC_EXPORT.txt"
    orders.write_bytes(orders.read_bytes().replace(b"|Pending|", b"|On Hold|"))
    r = run_cli("inspect", "--input", d, "--write-config", tmp_path / "site.toml")
    assert r.returncode == 0, r.stderr
    assert "'On Hold'" in r.stdout and "UNKNOWN" in r.stdout
    toml = (tmp_path / "site.toml").read_text(encoding="utf-8")
    assert "[values.imaging_orders.status]" in toml
    assert '# "On Hold" = "?"   # CHECK:' in toml  # commented: the run must not act on a guess
    template = pl.read_csv(tmp_path / "local_code_map.csv", infer_schema=False).fill_null("")
    todo = template.filter(pl.col("study_type") == "")
    assert sorted(todo["code"]) == ["24558-9", "LCL-NOTMAPPED-9"]  # CPT-form codes are imaging outside the audit
    assert template.filter(pl.col("code") == "LCL-DSM")["study_type"].to_list() == ["dsm"]  # the site's rows kept


def test_a_column_settled_day_first_is_read_day_first_in_every_form(small_input, tmp_path):
    """The starter config read 06/06/2025 10:00 and 14/06/2025 10:10 day first but 04/06/2025 09:00:30 month first
    (6 April): the premature order O4 fell outside the case's window, silently."""
    path = small_input / "imaging_orders.csv"
    frame = pl.read_csv(path, infer_schema=False)
    written = ["06/06/2025 10:00", "06/06/2025 10:05", "14/06/2025 10:10", "04/06/2025 09:00:30"]
    frame.with_columns(pl.Series("ordered_at", written)).write_csv(path)
    config, lines = inspect_writing_config(small_input, tmp_path)
    assert 'timestamp_formats = ["%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S"]' in config.read_text(encoding="utf-8")
    assert not [line for line in lines if "CHECK day and month" in line]
    out = tmp_path / "out"
    r = run_cli("run", "--input", small_input, "--config", config, "--out", out, "--warehouse", tmp_path / "wh.duckdb")
    assert r.returncode == 0, r.stderr
    audited = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
    (o4,) = audited.filter(pl.col("order_id") == "O4")["ordered_at"]
    assert o4.startswith("2025-06-04"), o4


def test_a_day_month_guess_no_value_settles_is_left_commented_for_a_person(small_input, tmp_path):
    """Every date of the extract read alike day first or month first: the starter config wrote the month-first
    guess as an active line (its CHECK a comment below it), and a run with it audited day-first dates silently."""
    ordered = ["06/06/2025 10:00:00 AM", "06/06/2025 10:05 AM", "06/06/2025 10:10 AM", "04/06/2025 9:00 AM"]
    for name, column, written in (
        ("procedures.csv", "performed_at", ["02/06/2025 09:00", "03/06/2025 09:00"]),
        ("imaging_orders.csv", "ordered_at", ordered),  # with and without seconds: the doubt covers both forms
    ):
        frame = pl.read_csv(small_input / name, infer_schema=False)
        frame.with_columns(pl.Series(column, written)).write_csv(small_input / name)
    config, lines = inspect_writing_config(small_input, tmp_path)
    assert (
        "             CHECK day and month: no value settles which comes first; %m/%d/%Y %I:%M %p, %m/%d/%Y %I:%M:%S %p "
        "(month first) and %d/%m/%Y %I:%M %p, %d/%m/%Y %I:%M:%S %p (day first) read every value alike"
    ) in lines
    text = config.read_text(encoding="utf-8")
    assert "\ntimestamp_formats" not in text  # no active guess
    assert (
        "# CHECK: no value of ordered_at settles which comes first, day or month; remove the # of the line that\n"
        "# fits the extract (until then a run reads none of these values)\n"
        '# timestamp_formats = ["%m/%d/%Y %I:%M %p", "%m/%d/%Y %I:%M:%S %p"]   # month first; reads ordered_at 4 of 4; '
        "ISO 8601 is always read too\n"
        '# timestamp_formats = ["%d/%m/%Y %I:%M %p", "%d/%m/%Y %I:%M:%S %p"]   # day first\n'
    ) in text
    # the config's list is a person's choice: inspect with it leaves it active, with no CHECK
    chosen = tmp_path / "chosen.toml"
    chosen.write_text('[formats.procedures]\ntimestamp_formats = ["%d/%m/%Y %H:%M"]\n', encoding="utf-8")
    again = tmp_path / "again.toml"
    r = run_cli("inspect", "--input", small_input, "--config", chosen, "--write-config", again)
    assert r.returncode == 0, r.stderr
    assert 'timestamp_formats = ["%d/%m/%Y %H:%M"]   # reads performed_at 2 of 2' in again.read_text(encoding="utf-8")
    assert "CHECK day and month" not in r.stdout.split("imaging_orders:")[0]
    args = ("run", "--input", small_input, "--config", config, "--out", tmp_path / "out", "--warehouse", tmp_path / "wh.duckdb")
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .endswith(
            'Set timestamp_formats = ["%m/%d/%Y %H:%M"] (month first) or ["%d/%m/%Y %H:%M"] (day first: no value settles '
            "which) under [formats.procedures] in the config; order-audit inspect shows more"
        )
    ), r.stderr
    config.write_text("\n".join(line[2:] if line.endswith("# day first") else line for line in text.splitlines()))
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    audited = pl.read_csv(tmp_path / "out" / "csf_leak" / "audited_orders.csv", infer_schema=False)
    (o4,) = audited.filter(pl.col("order_id") == "O4")["ordered_at"]
    assert o4.startswith("2025-06-04"), o4


def _audited(out: Path) -> pl.DataFrame:
    return (
        pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False).fill_null("").select(COMPARED).sort("order_id")
    )


@pytest.fixture(scope="module")
def canonical_run(site) -> pl.DataFrame:
    out = site["base"] / "out-canonical"
    r = run_cli("run", "--input", site["canonical"], "--out", out, "--warehouse", site["base"] / "canonical.duckdb")
    assert r.returncode == 0, r.stderr
    return _audited(out)


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["text", "xlsx"])
def test_site_shaped_deck_reaches_the_canonical_verdicts_after_inspect(site, canonical_run, shape):
    source = site["text"] if shape == "text" else export_workbook(site["canonical"], site["base"] / "xlsx")
    config = site["base"] / f"{shape}-config" / "site.toml"
    config.parent.mkdir()
    r = run_cli("inspect", "--input", source, "--write-config", config)
    assert r.returncode == 0, r.stderr
    out = site["base"] / f"out-{shape}"
    r = run_cli("run", "--input", source, "--config", config, "--out", out, "--warehouse", site["base"] / f"{shape}.duckdb")
    assert r.returncode == 0, r.stderr
    assert "no map knows" not in r.stderr
    info = json.loads((out / "csf_leak" / "run.json").read_text())
    assert all(i["rows_rejected"] == 0 for i in info["inputs"]), info["inputs"]
    got = _audited(out)
    differ = got.join(canonical_run, on="order_id", how="full", suffix="_canonical", coalesce=True).filter(
        pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_canonical")) for c in COMPARED[1:]])
    )
    assert differ.height == 0, differ
    assert got.height == canonical_run.height == sum(len(_rows(f.case, "expected_orders")) for f in CSF_DECK)


def test_a_coded_column_full_of_different_values_is_not_listed(tmp_path, small_input):
    """A shifted column can put ids where status words belong: inspect counts them and shows none."""
    path = small_input / "imaging_orders.csv"
    frame = pl.read_csv(path, infer_schema=False)
    frame = pl.concat([frame] * 8).with_columns(
        pl.format("O{}", pl.int_range(pl.len())).alias("order_id"),
        pl.format("MRN-{}", pl.int_range(pl.len())).alias("status"),
    )
    frame.write_csv(path)
    r = run_cli("inspect", "--input", small_input, "--json")
    assert r.returncode == 0, r.stderr
    orders = json.loads(r.stdout)["imaging_orders"]
    assert orders["values"]["status"] == []
    assert any("32 different values: not a vocabulary" in p for p in orders["problems"])
    assert "MRN-" not in r.stdout


def test_procedure_codes_are_told_apart_by_their_system(small_input):
    """Procedures coded in HCPCS or ICD-10-PCS (an inpatient's) are named as such: the audits find index
    procedures by CPT code, so a site learns before the first run that those rows will never be cases."""
    path = small_input / "procedures.csv"
    frame = pl.read_csv(path, infer_schema=False)
    extra = pl.DataFrame({"procedure_id": ["PR3", "PR4", "PR5"], "procedure_code": ["G0260", "009U3ZX", "LCL-LP"]}).with_columns(
        pl.lit(v).alias(c) for c, v in frame.row(0, named=True).items() if c not in ("procedure_id", "procedure_code")
    )
    pl.concat([frame, extra.select(frame.columns)]).write_csv(path)
    r = run_cli("inspect", "--input", small_input, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["procedures"]["code_systems"] == {"CPT": 2, "HCPCS": 1, "ICD-10-PCS": 1, "other": 1}
    text = run_cli("inspect", "--input", small_input).stdout.splitlines()
    at = next(i for i, line in enumerate(text) if line.startswith("procedures:"))
    codes = next(i for i in range(at, len(text)) if text[i].startswith("  codes"))
    assert text[codes : codes + 2] == [
        "  codes      CPT 40.0%, HCPCS 20.0%, ICD-10-PCS 20.0%, other 20.0% of 5",
        "             CHECK: 3 procedures not coded in CPT; the audits' value sets list procedures by CPT code, so these"
        " are no audit's index procedure (export the CPT code where the EHR has one)",
    ]


def _titled_workbook(folder: Path, table: str, title_rows: int) -> Path:
    """The table's CSV as a report writer's sheet: title rows (and a blank one) above the header, capital names."""
    import xlsxwriter

    frame = pl.read_csv(folder / f"{table}.csv", infer_schema=False)
    (folder / f"{table}.csv").unlink()
    path = folder / "RADIOLOGY_ORDERS.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet(table)
    for i in range(title_rows):
        sheet.write(i, 0, f"Imaging orders - Radiology reporting, line {i + 1} of the title")
    top = title_rows + 1  # a blank row between the title and the header
    sheet.write_row(top, 0, [c.upper().replace("_", " ") for c in frame.columns])
    for r, row in enumerate(frame.iter_rows(), start=top + 1):
        sheet.write_row(r, 0, ["" if v is None else v for v in row])
    book.close()
    return path


def test_a_title_above_a_sheets_header_is_found_and_written_as_header_row(small_input, tmp_path):
    """A report writer's workbook puts a title above the header: the loader read the title as the header, and
    inspect said every column was missing and that '' was given twice. Inspect finds the header's row, and the
    starter config's header_row makes the loader read from there."""
    _titled_workbook(small_input, "imaging_orders", title_rows=2)
    config, lines = inspect_writing_config(small_input, tmp_path)
    at = lines.index("imaging_orders: RADIOLOGY_ORDERS.xlsx [sheet imaging_orders] (found by name), 4 rows")
    assert lines[at + 1 : at + 3] == [
        "  header     Excel row 4, below a title (header_row = 4)",
        "  columns    order_id <- ORDER ID (same name, other spelling)",
    ]
    toml = config.read_text(encoding="utf-8")
    section = toml.split("[formats.imaging_orders]\n")[1].split("\n\n")[0]
    assert section == (
        'file = "RADIOLOGY_ORDERS.xlsx"   # found by name\n'
        'sheet = "imaging_orders"\n'
        "header_row = 4   # the rows above the header hold a title"
    )
    r = run_cli("validate", "--input", small_input, "--config", config, "--json")
    assert r.returncode == 0, r.stderr
    assert "missing" not in r.stderr


def test_header_row_reads_a_sheet_from_its_header_and_numbers_rows_as_excel(tmp_path):
    from pipeline.ingest import xlsx

    write_small = pl.DataFrame({"order_id": ["O1", "O2"], "status": ["completed", None]})
    write_small.write_csv(tmp_path / "imaging_orders.csv")
    path = _titled_workbook(tmp_path, "imaging_orders", title_rows=1)
    got = xlsx.read_sheet(path, "imaging_orders", "line", header_row=3)
    assert got.to_dicts() == [
        {"line": 4, "ORDER ID": "O1", "STATUS": "completed"},
        {"line": 5, "ORDER ID": "O2", "STATUS": None},
    ]
    assert xlsx.header(path, "imaging_orders", 3) == ["ORDER ID", "STATUS"]
    assert xlsx.header(path, "imaging_orders") == ["Imaging orders - Radiology reporting, line 1 of the title", ""]


def test_a_header_row_that_is_no_line_number_is_refused(small_input, tmp_path):
    config = tmp_path / "site.toml"
    config.write_text("[formats.imaging_orders]\nheader_row = 0\n", encoding="utf-8")
    r = run_cli("validate", "--input", small_input, "--config", config)
    assert r.returncode != 0
    assert r.stderr.splitlines()[-1].endswith(
        "[formats.imaging_orders].header_row: expected the number of the header's line (a workbook: Excel's row; 1, 2 ...), got 0"
    )


def test_codes_written_with_their_description_in_one_cell_are_read_as_their_code(small_input, tmp_path):
    """'72148 - MRI LUMBAR SPINE W/O' in the code column: every order was read as an unknown local code, and inspect
    listed each such cell in local_code_map.csv for the site to fill in by hand. Inspect now writes
    code_with_description, and judges the codes as the loader will read them (here CPT codes a map knows)."""
    path = small_input / "imaging_orders.csv"
    frame = pl.read_csv(path, infer_schema=False)
    names = {"72156": "MRI CERVICAL SPINE W/WO", "72157": "MRI THORACIC SPINE W/WO", "72158": "MRI LUMBAR SPINE W/WO"}
    names["72148"] = "MRI LUMBAR SPINE W/O"
    frame.with_columns(pl.col("order_code") + " - " + pl.col("order_code").replace_strict(names)).write_csv(path)
    config, lines = inspect_writing_config(small_input, tmp_path)
    at = lines.index("imaging_orders: imaging_orders.csv (found by name), 4 rows")
    assert lines[at + 1] == (
        "  code cells order_code: 4 of 4 cells hold a code and its description (e.g. '72148 - MRI LUMBAR SPINE W/O');"
        " the code is read as the first word (code_with_description = true)"
    )
    assert "  codes      CPT 100.0% of 4" in lines
    assert not [line for line in lines if line.startswith("  no map")]
    assert not (tmp_path / "site" / "local_code_map.csv").exists()  # nothing to fill in: every code is known
    assert "code_with_description = true" in config.read_text(encoding="utf-8")


def test_a_decimal_comma_in_a_number_column_is_named(small_input):
    """A European export writes 45,5: the loader read no number there (the age unknown), and inspect said nothing.
    Inspect counts them and writes decimal_comma (tests/test_extract_shapes.py reads them)."""
    path = small_input / "procedures.csv"
    pl.read_csv(path, infer_schema=False).with_columns(pl.Series("patient_age", ["45,5", "52"])).write_csv(path)
    r = run_cli("inspect", "--input", small_input)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    at = lines.index("procedures: procedures.csv (found by name), 2 rows")
    assert lines[at + 1] == (
        "  numbers    written with a decimal comma (45,5): patient_age 1; read as decimals (decimal_comma = true)"
    )


def test_counts_read_with_thousands_separators_as_everywhere_else(small_input, tmp_path):
    """Every count inspect prints, as the reports and the logs print counts ('10178 distinct values' stood beside
    '10,205 rows'); --json keeps the plain numbers."""
    path = small_input / "imaging_orders.csv"
    frame = pl.read_csv(path, infer_schema=False)
    frame = pl.concat([frame] * 300).with_columns(
        pl.format("O{}", pl.int_range(pl.len())).alias("order_id"),
        (pl.datetime(2025, 6, 1) + pl.duration(minutes=pl.int_range(pl.len()))).dt.to_string("%F %T").alias("ordered_at"),
        pl.format("LOC-{}", pl.int_range(pl.len()) % 25).alias("order_code"),
    )
    frame.write_csv(path)
    _, lines = inspect_writing_config(small_input, tmp_path)
    (ordered_at,) = [line for line in lines if "ordered_at:" in line]
    assert ordered_at.endswith("ISO 8601 reads 1,200 distinct values of the sample; reads 1,200 of 1,200"), ordered_at
    assert "             ... 5 more, all in local_code_map.csv with --write-config" in lines
    written = (tmp_path / "site" / "order-audit.toml").read_text(encoding="utf-8")
    assert "1200" not in written
    found = json.loads(run_cli("inspect", "--input", small_input, "--json").stdout)
    (ts,) = found["imaging_orders"]["formats"]
    assert (found["imaging_orders"]["rows"], ts["values"]) == (1200, 1200)


def test_an_order_code_in_cpt_form_outside_radiology_is_named_as_maybe_the_sites_own():
    """00412 is five digits, so CPT's form: read as a CPT code no map lists, its complete-spine MRIs left the audit
    without a word (an onboarding review). inspect names such codes beside the other CPT codes."""
    from pipeline.ingest.starter_config import code_lines

    unknown = [
        {"code": "00412", "orders": 3, "system": "CPT", "name": None},
        {"code": "71046", "orders": 40, "system": "CPT", "name": None},
        {"code": "93880", "orders": 2, "system": "CPT", "name": None},
        {"code": "0042T", "orders": 1, "system": "CPT", "name": None},
    ]
    lines = code_lines("imaging_orders", {"CPT": 46}, unknown)
    assert lines[-2].startswith("  other CPT  4 codes no map lists, read as imaging outside this audit: 00412 (3), 71046 (40)")
    assert lines[-1].startswith(
        "             CHECK: outside CPT's radiology section (70010-79999): 00412 (3), 93880 (2). If they are the site's own "
        "exam codes, list them in local_code_map.csv"
    )
    assert not any("CHECK" in line for line in code_lines("imaging_orders", {"CPT": 40}, unknown[1:2]))


def test_an_empty_coded_cell_is_no_word_to_map(small_input, tmp_path):
    """A workbook's empty cell reached inspect as '' (a CSV's as spaces): it was listed as an unknown word, and the
    starter config asked for a mapping of it (# "" = "?"). An empty cell is no value; the run reads it so."""
    path = small_input / "procedures.csv"
    frame = pl.read_csv(path, infer_schema=False)
    frame.with_columns(pl.Series("needle_type", ["Tuohy", "   "][: frame.height])).write_csv(path)
    config, lines = inspect_writing_config(small_input, tmp_path)
    needle = [line for line in lines if "'Tuohy'" in line or "'   '" in line or "''" in line]
    assert needle and all("Tuohy" in line for line in needle), needle
    text = config.read_text(encoding="utf-8")
    assert '"Tuohy" = "?"' in text and '"   " = "?"' not in text and '"" = "?"' not in text


def test_columns_without_a_name_are_counted_not_listed(small_input, tmp_path):
    """An export's trailing delimiters (a header ending ',,') read 'kept as extra columns: Accession #, , '."""
    path = small_input / "imaging_orders.csv"
    text = path.read_text(encoding="utf-8").splitlines()
    body = [text[0] + ",Accession #,,"] + [line + ",A1,," for line in text[1:]]
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    _, lines = inspect_writing_config(small_input, tmp_path)
    assert "             kept as extra columns: Accession # and 2 columns without a name" in lines


def test_a_file_of_one_huge_line_is_inspected_without_a_traceback(tmp_path):
    """A file of one line of 6 MB ('a,a,a,...', no line break): the delimiter guess split it with Python's csv
    module, whose field limit (131,072 characters) the line read with ';' or a tab passed: a traceback, exit 70.
    Its columns are counted past the first ones, not printed in a line of 100 KB."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "imaging_orders.csv").write_text("a," * 3_000_000, encoding="utf-8")
    (d / "diagnoses.csv").write_text("patient_id,diagnosis_code,recorded_at\n", encoding="utf-8")  # an audit's files
    r = run_cli("inspect", "--input", d)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    [extra] = [line for line in r.stdout.splitlines() if "kept as extra columns" in line]
    assert "a, a (32,748 more)" in extra and len(extra) < 300, extra[:300]


def test_a_quote_never_closed_in_the_first_mebibyte_is_inspected(small_input):
    """A quote opened on the first row and never closed: the rest of the sample is one field, longer than the csv
    module takes, which stopped inspect with a traceback."""
    path = small_input / "imaging_orders.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0], lines[1] + ',"never closed'] + ["x" * 1000] * 200) + "\n", encoding="utf-8")
    r = run_cli("inspect", "--input", small_input)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "imaging_orders.csv, line 2: cannot be read as CSV: a quoted field opens on this line" in r.stdout


def test_a_header_name_holding_a_quote_maps_and_runs(small_input, tmp_path):
    """A name quoted with a doubled quote inside (CSV's way to write 'Order "ID"'): inspect maps
    order_id to 'Order "ID"' as the csv module reads it, and Polars kept the name 'Order ""ID""': the run with the
    starter config stopped with 'the CSV could not be parsed', no line named. Names with a backslash, a bracket or
    a formula's '=' are written to valid TOML alike."""
    path = small_input / "imaging_orders.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = '"Order ""ID""",patient\\id,Ordered]At,order_code,=ordering_department,indication_codes,status'
    path.write_text("\n".join([header, *lines[1:]]) + "\n", encoding="utf-8")
    config, _ = inspect_writing_config(small_input, tmp_path)
    text = config.read_text(encoding="utf-8")
    assert 'order_id = "Order \\"ID\\""' in text and 'patient_id = "patient\\\\id"' in text
    r = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--config", config, "--no-validate")
    assert r.returncode == 0, r.stderr
    assert "loaded imaging_orders: 4 rows read, 4 loaded, 0 rejected" in r.stderr


def test_a_column_written_day_first_and_month_first_is_named_and_no_format_is_set(small_input, tmp_path):
    """13/06/2025 (day first) and 06/14/2025 (month first) in one column: inspect chose month first, listed
    13/06/2025 as 'not read' and wrote an active timestamp_formats that read 05/06 and 07/06 month first, perhaps
    wrongly, with no word that the column mixes the two; the run's error advised setting a format."""
    guess = detect.guess_formats(["13/06/2025 10:00", "06/14/2025 10:00", "05/06/2025 10:00"])
    assert guess.mixed_day_month == ("06/14/2025 10:00", "13/06/2025 10:00")
    assert detect.guess_formats(["13/06/2025 10:00", "05/06/2025 10:00"]).mixed_day_month is None  # day first alone
    open_ = detect.guess_formats(["05/06/2025 10:00"])
    detect.settle_day_month([guess, open_])  # the mixed column settles no other column's order
    assert open_.ambiguous == ["%m/%d/%Y %H:%M"]
    orders = pl.read_csv(small_input / "imaging_orders.csv", infer_schema=False)
    when = ["13/06/2025 10:00", "06/14/2025 10:00", "05/06/2025 10:00", "07/06/2025 11:00"]
    orders.with_columns(pl.Series("ordered_at", when)).write_csv(small_input / "imaging_orders.csv")
    config, lines = inspect_writing_config(small_input, tmp_path)
    assert any(line.strip().startswith("CHECK day and month: written both ways ('06/14/2025 10:00'") for line in lines)
    text = config.read_text(encoding="utf-8")
    assert "# CHECK: ordered_at writes day and month both ways" in text
    assert "\ntimestamp_formats" not in text and '# timestamp_formats = ["%m/%d/%Y %H:%M"]' in text
    r = run_cli("validate", "--input", small_input, "--config", config)
    assert r.returncode == 2 and "writes day and month both ways" in r.stderr, r.stderr


def test_a_local_code_in_cpt_form_is_named_past_the_500_most_used_codes(small_input, tmp_path):
    """inspect kept the 500 most used codes no map lists, and named a code outside CPT's radiology section only
    among them: a site's local code of one order (00412) beside 500 radiology codes of two orders each was cut,
    and no CHECK line named it."""
    orders = pl.read_csv(small_input / "imaging_orders.csv", infer_schema=False)
    first = orders.row(0, named=True)
    codes = [str(71000 + i) for i in range(500) for _ in range(2)] + ["00412"]
    many = pl.DataFrame([{**first, "order_id": f"X{i}", "order_code": code} for i, code in enumerate(codes)])
    pl.concat([orders, many]).write_csv(small_input / "imaging_orders.csv")
    r = run_cli("inspect", "--input", small_input)
    assert r.returncode == 0, r.stderr
    assert "CHECK: outside CPT's radiology section (70010-79999): 00412 (1)." in r.stdout


def test_a_folder_no_audit_can_run_on_exits_2_after_its_findings(tmp_path):
    """An empty folder (a delivery that never came, a wrong path) was inspected with exit 0, every table "no file",
    while `validate` and `run` exit 2 on it: a job checking deliveries with inspect read success. The findings
    are still printed; the last line is the run's own, and no starter config is written. A folder holding the
    files one audit needs (orders and diagnoses: low back pain) is inspected with exit 0."""
    from conftest import DX_HEADER, ORDER_HEADER, write_csv

    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("inspect", "--input", empty, "--write-config", tmp_path / "site.toml")
    assert r.returncode == 2, r.stderr
    assert "imaging_orders: no file (not found)" in r.stdout
    assert r.stderr.splitlines() == [
        "order-audit: error: procedures.csv: required file missing; the audits that need it: csf_leak. Put "
        "procedures.csv (or .parquet, .xlsx) in the input folder, or name its file under [formats.procedures] in the "
        "config (order-audit inspect --input DIR suggests one)"
    ]
    assert not (tmp_path / "site.toml").exists()

    write_csv(empty / "imaging_orders.csv", ORDER_HEADER, [["O1", "M", "2025-06-06 10:00:00", "72148", "ED", "M54.5", ""]])
    write_csv(empty / "diagnoses.csv", DX_HEADER, [["M", "M54.5", "2025-06-06 08:00:00"]])
    r = run_cli("inspect", "--input", empty)
    assert r.returncode == 0, r.stderr
    assert "procedures: no file (not found); needed by csf_leak" in r.stdout


def test_a_delivery_of_some_tables_a_run_with_a_warehouse_reads_is_inspected_with_exit_0(tmp_path, small_input):
    """A month's diagnoses alone, which `run --warehouse` reads (the warehouse holds the orders and procedures),
    were refused by inspect with exit 2 ("procedures.csv: required file missing"): inspect knows no warehouse, and a
    job checking each delivery with it read a failure. What is missing is named in the findings."""
    run = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", tmp_path / "wh.duckdb")
    assert run.returncode == 0, run.stderr
    month = tmp_path / "month"
    month.mkdir()
    (month / "diagnoses.csv").write_bytes((small_input / "diagnoses.csv").read_bytes())
    again = run_cli("run", "--input", month, "--out", tmp_path / "out2", "--warehouse", tmp_path / "wh.duckdb")
    assert again.returncode == 0, again.stderr
    r = run_cli("inspect", "--input", month)
    assert r.returncode == 0, r.stderr
    assert "procedures: no file (not found); needed by csf_leak" in r.stdout
