"""Extracts in a site's own shape: delimiters, encodings, timestamp and date formats, Excel workbooks.

Loader-level tests on small inline files (seconds); the whole site-shaped deck through the
real CLI is tests/test_inspect.py.
"""

from __future__ import annotations

import pytest
from conftest import ORDER_HEADER, PROC_HEADER, run_cli, write_csv

from pipeline import warehouse
from pipeline.config import load_config
from pipeline.errors import ConfigError, InputFileError
from pipeline.ingest import load

PROC = ["PR1", "MRN-1", "2025-06-02 09:00:00", "62323", "Pain", "1970-05-05"]


def _config(tmp_path, text: str):
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def _load(d, tmp_path, cfg):
    con = warehouse.connect(tmp_path / "wh.duckdb")
    loads = load.load_inputs(con, load.find_inputs(d, cfg), cfg)
    return con, {ld.table: ld for ld in loads}


def _write(path, lines: list[str], encoding: str = "utf-8", newline: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(lines) + newline).encode(encoding))  # one encode: one byte-order mark


def _orders(con) -> list[tuple]:
    return con.execute(
        "SELECT order_id, strftime(ordered_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M'), ordered_at_is_date, "
        "ordering_department, status FROM src_imaging_orders ORDER BY order_id"
    ).fetchall()


def _rejects(con) -> list[tuple]:
    return con.execute(
        "SELECT table_name, source_file, source_line, column_name, reason FROM load_rejects ORDER BY source_line"
    ).fetchall()


def test_pipe_delimited_windows_1252_with_us_timestamps(tmp_path):
    d = tmp_path / "in"
    write_csv(d / "procedures.csv", PROC_HEADER, [PROC])
    _write(
        d / "ORDERS.txt",
        [
            "|".join(ORDER_HEADER),
            "O1|MRN-1|6/6/2025 10:00 AM|72156|Neurología – adultos||Final",
            "O2|MRN-1|06/06/2025 1:05 PM|72157|Neurología – adultos||Canceled",
            "O3|MRN-1|6/7/2025|72158|Neurología – adultos||Sent",
            "O4|MRN-1|2025-06-08T10:00:00-04:00|72158|Neurología – adultos||Signed",
            "O5|MRN-1|13/6/2025 10:00 AM|72158|Neurología – adultos||Final",
        ],
        encoding="cp1252",
        newline="\r\n",
    )
    cfg = _config(
        tmp_path,
        '[formats.imaging_orders]\nfile = "ORDERS.txt"\ndelimiter = "|"\nencoding = "cp1252"\n'
        'timestamp_formats = ["%m/%d/%Y %I:%M %p", "%m/%d/%Y"]\n',
    )
    con, loads = _load(d, tmp_path, cfg)
    assert _orders(con) == [
        ("O1", "2025-06-06 14:00", False, "Neurología – adultos", "completed"),
        ("O2", "2025-06-06 17:05", False, "Neurología – adultos", "cancelled"),
        ("O3", "2025-06-07 04:00", True, "Neurología – adultos", "ordered"),  # a bare date: local midnight
        ("O4", "2025-06-08 14:00", False, "Neurología – adultos", "ordered"),  # ISO 8601 is read as well
    ]
    (row,) = _rejects(con)
    assert row[:4] == ("imaging_orders", str(d / "ORDERS.txt"), 6, "ordered_at")  # 13/6 is no month-first date
    assert "%m/%d/%Y %I:%M %p or %m/%d/%Y (timestamp_formats)" in row[4]
    assert loads["imaging_orders"].rows_read == 5


def test_a_cp1252_byte_the_file_does_not_declare_names_its_line(tmp_path, small_input):
    path = small_input / "imaging_orders.csv"
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"Neurology", b"Neurolog\x81")  # 0x81 is undefined in Windows-1252
    path.write_bytes(b"\n".join(lines))
    cfg = _config(tmp_path, '[formats.imaging_orders]\nencoding = "cp1252"\n')
    with pytest.raises(InputFileError) as err:
        _load(small_input, tmp_path, cfg)
    assert "imaging_orders.csv, line 4: byte 0x81 is not cp1252 text" in err.value.message
    assert "[formats.imaging_orders]" in err.value.message


@pytest.mark.parametrize(
    ("encoding", "delimiter", "suffix"),
    [("latin-1", ";", ".csv"), ("utf-16", "\t", ".tsv"), ("utf-8-sig", ",", ".txt")],
)
def test_other_encodings_and_delimiters(tmp_path, encoding, delimiter, suffix):
    d = tmp_path / "in"
    write_csv(d / "procedures.csv", PROC_HEADER, [PROC])
    rows = [ORDER_HEADER, ["O1", "MRN-1", "2025-06-06 10:00:00", "72156", "Neurología", "G97.1", "completed"]]
    _write(d / f"imaging_orders{suffix}", [delimiter.join(r) for r in rows], encoding=encoding)
    settings = f'encoding = "{encoding}"\n'
    if suffix != ".tsv":  # a .tsv file is tab-delimited without saying so
        settings += f'delimiter = "{delimiter}"\n'
    cfg = _config(tmp_path, "[formats.imaging_orders]\n" + settings)
    con, _ = _load(d, tmp_path, cfg)
    assert _orders(con) == [("O1", "2025-06-06 14:00", False, "Neurología", "completed")]


def test_offset_formats_and_date_formats(tmp_path):
    d = tmp_path / "in"
    _write(
        d / "procedures.csv",
        [
            ",".join(PROC_HEADER),
            "PR1,MRN-1,20250602 0900 +0200,62323,Pain,05.05.1970",
            "PR2,MRN-2,20250602 0900 +2500,62323,Pain,",
        ],
    )
    write_csv(d / "imaging_orders.csv", ORDER_HEADER, [["O1", "MRN-1", "2025-06-06 10:00:00", "72156", "N", "", ""]])
    cfg = _config(tmp_path, '[formats.procedures]\ntimestamp_formats = ["%Y%m%d %H%M %z"]\ndate_formats = ["%d.%m.%Y"]\n')
    con, _ = _load(d, tmp_path, cfg)
    got = con.execute(
        "SELECT procedure_id, strftime(performed_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M'), patient_birth_date FROM src_procedures"
    ).fetchall()
    assert [(g[0], g[1], str(g[2])) for g in got] == [("PR1", "2025-06-02 07:00", "1970-05-05")]
    (row,) = _rejects(con)
    assert row[2:4] == (3, "performed_at")  # +2500 is no offset: %z does not read it, nor does ISO 8601


def test_excel_date_serials_in_a_csv_are_named_with_advice_a_csv_can_follow(small_input):
    """45814.4166 in a CSV (a workbook's times without a date format, saved as CSV) was met with 'set
    timestamp_formats to the extract's form', which no strftime format can be; a workbook's were named."""
    path = small_input / "imaging_orders.csv"
    header = path.read_text(encoding="utf-8").splitlines()[0]
    path.write_text(f"{header}\nO1,MRN-1,45814.4166,72156,N,,\nO2,MRN-1,45815.4166,72157,N,,\n", encoding="utf-8")
    r = run_cli("validate", "--input", small_input)
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()[-1:]
    assert line.startswith(
        "order-audit: error: imaging_orders.csv, column 'ordered_at': no timestamp in this column parsed (2 values, e.g. "
        "'45814.4166' on line 2). The values look like Excel date serials (days since 1899-12-30)"
    ), line
    assert "format the column as a date in Excel" in line and "ISO 8601" in line and "Set timestamp_formats" not in line


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[formats.imaging_orders]\ndelimiter = "||"\n', "expected one character"),
        ('[formats.imaging_orders]\nencoding = "klingon"\n', "'klingon' is not an encoding name"),
        ('[formats.imaging_orders]\ntimestamp_formats = ["%H:%M"]\n', "has no year or no day"),
        ('[formats.imaging_orders]\ntimestamp_formats = ["MM/DD/YYYY"]\n', "is not a strftime format"),
        ('[formats.imaging_orders]\nsepartor = ";"\n', "unknown setting(s) separtor"),
        ('[formats.orders]\ndelimiter = ";"\n', "unknown table(s) orders"),
    ],
)
def test_format_settings_are_checked_when_the_config_is_read(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, text)
    assert message in err.value.message and "site.toml" in err.value.message


def test_configured_file_that_does_not_exist(tmp_path, small_input):
    cfg = _config(tmp_path, '[formats.imaging_orders]\nfile = "ORDERS.txt"\n')
    with pytest.raises(InputFileError) as err:
        load.find_inputs(small_input, cfg)
    assert "ORDERS.txt: not found. Fix file under [formats.imaging_orders]" in err.value.message


@pytest.mark.parametrize("with_formats", [False, True])
def test_typing_with_formats_and_value_maps_still_streams(small_input, tmp_path, with_formats):
    """The configured formats and the value maps keep the typing on Polars' streaming engine."""
    text = '[formats.imaging_orders]\ntimestamp_formats = ["%m/%d/%Y %I:%M %p", "%Y%m%d %H%M %z"]\n' if with_formats else ""
    cfg = _config(tmp_path, text + '[values.imaging_orders.status]\n"In progress" = "ordered"\n')
    contract = load.CONTRACTS[1]
    f = load.find_inputs(small_input, cfg)["imaging_orders"]
    lf, schema = load.scan(f, load._column_map(f, contract, cfg))
    graph = load.typed_frame(lf, schema, contract, cfg).show_graph(
        engine="streaming", plan_stage="physical", raw_output=True, show=False
    )
    assert "in-memory engine fallback" in graph
    assert [line for line in graph.splitlines() if 'fillcolor="0.0 0.3 1.0"' in line] == []


# ----------------------------------------------------------------------------------------------- Excel


def _workbook(path, sheets: dict[str, list[list]], first_row: int = 0) -> None:
    import xlsxwriter

    book = xlsxwriter.Workbook(str(path))
    for name, rows in sheets.items():
        sheet = book.add_worksheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is not None:
                    sheet.write(first_row + r, c, value)
    book.close()


def test_workbook_sheets_load_with_excel_row_numbers(tmp_path):
    import datetime as dt

    d = tmp_path / "in"
    d.mkdir()
    orders = [
        ORDER_HEADER,
        ["O1", "MRN-1", "2025-06-06 10:00:00", 72156, "Neurology", "G97.1", "Final"],
        [None] * 7,  # a blank row: skipped, but Excel still counts it
        ["O2", "MRN-1", "not a time", 72157, "Neurology", "G97.1", "completed"],
        ["O3", "MRN-1", "2025-06-07 10:00:00", "0001U", "Neurology", "", "Canceled"],
    ]
    _workbook(d / "extract.xlsx", {"Procedures": [PROC_HEADER, PROC], "imaging_orders": orders}, first_row=2)
    # a date cell (not text) in a second workbook, for the diagnoses
    import xlsxwriter

    book = xlsxwriter.Workbook(str(d / "diagnoses.xlsx"))
    sheet = book.add_worksheet("Dx")
    sheet.write_row(0, 0, ["patient_id", "diagnosis_code", "recorded_at"])
    sheet.write_row(1, 0, ["MRN-1", "G97.1"])
    sheet.write_datetime(1, 2, dt.datetime(2025, 6, 3), book.add_format({"num_format": "m/d/yyyy"}))
    book.close()
    cfg = _config(tmp_path, '[formats.procedures]\nsheet = "Procedures"\nfile = "extract.xlsx"\n')
    inputs = load.find_inputs(d, cfg)
    assert {t: (f.path.name, f.sheet) for t, f in inputs.items()} == {
        "procedures": ("extract.xlsx", "Procedures"),
        "imaging_orders": ("extract.xlsx", "imaging_orders"),  # the sheet named like the table
        "diagnoses": ("diagnoses.xlsx", "Dx"),  # the only sheet of <table>.xlsx
    }
    con, loads = _load(d, tmp_path, cfg)
    got = con.execute("SELECT order_id, order_code, status, source_line FROM src_imaging_orders ORDER BY 1").fetchall()
    assert got == [("O1", "72156", "completed", 4), ("O3", "0001U", "cancelled", 7)]  # header on Excel row 3
    (row,) = _rejects(con)
    assert row[1:4] == (f"{d / 'extract.xlsx'} [sheet imaging_orders]", 6, "ordered_at")
    dx = con.execute(
        "SELECT recorded_at_is_date, strftime(recorded_at AT TIME ZONE 'UTC', '%H:%M') FROM src_diagnoses"
    ).fetchall()
    assert dx == [(True, "04:00")]  # a date cell is a bare date: local midnight
    assert loads["imaging_orders"].rows_read == 3


def test_workbook_problems_are_one_line(tmp_path, small_input):
    (small_input / "imaging_orders.csv").unlink()
    _workbook(small_input / "imaging_orders.xlsx", {"A": [["x"]], "B": [["y"]]})
    r = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", tmp_path / "wh.duckdb")
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "imaging_orders.xlsx: no sheet is named imaging_orders (sheets: 'A', 'B')" in line
    assert "[formats.imaging_orders]" in line
    (small_input / "imaging_orders.xlsx").write_bytes(b"not a zip at all")
    r = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", tmp_path / "wh.duckdb")
    assert r.returncode == 2 and "imaging_orders.xlsx: not a readable .xlsx workbook" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
