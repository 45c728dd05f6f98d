"""Loading: the data contract, file-level errors (one line, exit code, nothing touched) and row-level rejects."""

from __future__ import annotations

import polars as pl
import pytest
from conftest import ORDER_HEADER, PROC_HEADER, run_cli, write_csv

from pipeline import warehouse
from pipeline.config import load_config
from pipeline.errors import InputFileError
from pipeline.ingest import load


def _load(input_dir, tmp_path, **cfg):
    con = warehouse.connect(tmp_path / "wh.duckdb")
    config = load_config(None, **cfg)
    loads = load.load_inputs(con, load.find_inputs(input_dir, config), config)
    return con, {ld.table: ld for ld in loads}


def _rejects(con):
    return con.execute(
        "SELECT table_name, source_line, column_name, value, reason, action FROM load_rejects "
        "ORDER BY table_name, source_line, column_name"
    ).fetchall()


# ---------------------------------------------------------------- file-level problems


@pytest.mark.parametrize(
    "case, expect",
    [
        ("missing_orders", "imaging_orders.csv: required file missing"),
        ("missing_column", "required column(s) missing: ordering_department"),
        ("empty_file", "file is empty"),
        ("header_only", "has a header but no rows"),
        ("not_utf8", "is not UTF-8"),
        ("parquet_named_csv", "is a Parquet file named .csv"),
        ("binary", "is a binary file"),
        ("too_many_fields", "fields where the header has"),
    ],
)
def test_file_level_errors_stop_with_one_line(small_input, tmp_path, case, expect):
    orders = small_input / "imaging_orders.csv"
    if case == "missing_orders":
        orders.unlink()
    elif case == "missing_column":
        df = pl.read_csv(orders, infer_schema=False).drop("ordering_department")
        df.write_csv(orders)
    elif case == "empty_file":
        orders.write_bytes(b"")
    elif case == "header_only":
        orders.write_text(",".join(ORDER_HEADER) + "\n")
    elif case == "not_utf8":
        orders.write_bytes(orders.read_bytes().replace(b"Neurology", b"Neurolog\xff", 1))
    elif case == "parquet_named_csv":
        pl.read_csv(orders, infer_schema=False).write_parquet(tmp_path / "x.parquet")
        orders.write_bytes((tmp_path / "x.parquet").read_bytes())
    elif case == "binary":
        orders.write_bytes(b"order_id\x00\x01\x02")
    elif case == "too_many_fields":
        with orders.open("a") as fh:
            fh.write("O9,MRN-1,2025-06-06 10:00:00,72156,Neurology,,completed,EXTRA,MORE\n")
    out = tmp_path / "out"
    result = run_cli("run", "--input", small_input, "--out", out, "--warehouse", tmp_path / "wh.duckdb")
    assert result.returncode in (2, 3), result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.startswith("order-audit: error")]
    assert len(lines) == 1 and expect in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists(), "nothing may be written when the input is unreadable"


def test_missing_column_names_file_line_and_fix(small_input, tmp_path):
    df = pl.read_csv(small_input / "procedures.csv", infer_schema=False).drop("performed_at")
    df.write_csv(small_input / "procedures.csv")
    with pytest.raises(InputFileError) as err:
        _load(small_input, tmp_path)
    msg = err.value.message
    assert "procedures.csv, line 1" in msg and "performed_at" in msg and "[columns.procedures]" in msg


def test_failed_run_leaves_previous_outputs_untouched(small_input, tmp_path):
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    assert run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    (small_input / "imaging_orders.csv").write_bytes(b"")
    assert run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh).returncode == 2
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert before == after


# ---------------------------------------------------------------- row-level problems


def test_row_level_problems_are_set_aside_with_reason(tmp_path):
    d = tmp_path / "in"
    write_csv(
        d / "procedures.csv",
        PROC_HEADER,
        [
            ["PR1", "MRN-1", "2025-06-02 09:00:00", "62323", "Pain", "1970-05-05"],
            ["PR1", "MRN-1", "2025-06-02 09:00:00", "62323", "Pain", "1970-05-05"],  # duplicate id
            ["PR3", "MRN-3", "02/06/2025 9:00", "62323", "Pain", "1970-05-05"],  # second timestamp format
            ["PR4", "", "2025-06-02 09:00:00", "62323", "Pain", "1970-05-05"],  # missing patient
            ["PR5", "MRN-5", "2025-03-09 02:30:00", "62323", "Pain", "1970-05-05"],  # DST gap
            ["PR6", "MRN-6", "2025-06-02 09:00:00", "62323", "Pain", "not-a-date"],  # bad optional value
        ],
    )
    write_csv(
        d / "imaging_orders.csv",
        ORDER_HEADER,
        [
            ["O1", "MRN-1", "2025-06-06 10:00:00", "72156", "Neuro", "", "completed"],
            ["O2", "MRN-1", "", "72157", "Neuro", "", "completed"],  # no time: kept (missing_time)
        ],
    )
    con, loads = _load(d, tmp_path)
    rejects = _rejects(con)
    reasons = {(r[0], r[1], r[2]): r[4] for r in rejects}
    assert reasons[("procedures", 3, "procedure_id")].startswith("duplicate procedure_id: first seen at line 2")
    assert reasons[("procedures", 4, "performed_at")].startswith("unparseable timestamp")
    assert reasons[("procedures", 5, "patient_id")] == "required value missing"
    assert "DST gap" in reasons[("procedures", 6, "performed_at")]
    assert reasons[("procedures", 7, "patient_birth_date")].startswith("unparseable date")
    actions = {(r[1], r[2]): r[5] for r in rejects}
    assert actions[(7, "patient_birth_date")] == "value_nulled"
    assert loads["procedures"].rows_read == 6
    assert loads["procedures"].rows_rejected == 4
    assert loads["procedures"].rows_loaded == 2  # PR1 (first) and PR6 with its birth date nulled
    ids = [r[0] for r in con.execute("SELECT procedure_id FROM src_procedures ORDER BY 1").fetchall()]
    assert ids == ["PR1", "PR6"]
    assert loads["imaging_orders"].rows_loaded == 2


def test_timestamps_offsets_local_time_and_dst(tmp_path):
    d = tmp_path / "in"
    write_csv(
        d / "procedures.csv",
        PROC_HEADER,
        [
            ["A", "M", "2025-03-07 10:00:00", "62323", "Pain", "1970-01-01"],  # EST -> 15:00Z
            ["B", "M", "2025-03-10T11:00:00-04:00", "62323", "Pain", "1970-01-01"],
            ["C", "M", "2025-03-10T15:00:00Z", "62323", "Pain", "1970-01-01"],
            ["D", "M", "2025-07-01T10:00", "62323", "Pain", "1970-01-01"],  # EDT, no seconds
            ["E", "M", "2025-11-02 01:30:00", "62323", "Pain", "1970-01-01"],  # ambiguous: earlier (EDT)
            ["F", "M", "2025-07-01", "62323", "Pain", "1970-01-01"],  # date only: local midnight
            # hours and minutes with an offset, no seconds (ISO 8601 allows it): had been rejected as unparseable
            ["G", "M", "2025-03-10T11:00-04:00", "62323", "Pain", "1970-01-01"],
            ["H", "M", "2025-03-10T15:00Z", "62323", "Pain", "1970-01-01"],
            ["I", "M", "2025-03-10 20:30+0530", "62323", "Pain", "1970-01-01"],
        ],
    )
    write_csv(d / "imaging_orders.csv", ORDER_HEADER, [["O1", "M", "2025-06-06 10:00:00", "72156", "N", "", ""]])
    con, loads = _load(d, tmp_path)
    got = dict(con.execute("SELECT procedure_id, strftime(performed_at, '%Y-%m-%dT%H:%M:%S') FROM src_procedures").fetchall())
    assert got == {
        "A": "2025-03-07T15:00:00",
        "B": "2025-03-10T15:00:00",
        "C": "2025-03-10T15:00:00",
        "D": "2025-07-01T14:00:00",
        "E": "2025-11-02T05:30:00",
        "F": "2025-07-01T04:00:00",
        "G": "2025-03-10T15:00:00",
        "H": "2025-03-10T15:00:00",
        "I": "2025-03-10T15:00:00",
    }
    assert loads["procedures"].ambiguous_local_times == 1


def test_typing_reads_the_rare_rows_the_shortcuts_set_aside():
    """The typing looks up the site zone again only for wall times without exactly one instant, lower-cases
    only coded values that are not contract values already, and reads a timestamp's suffix only when it has
    one (typed_frame, timestamps.with_instant): each rare row still gets its full reading."""
    contract = next(c for c in load.CONTRACTS if c.name == "imaging_orders")
    rows = [  # (ordered_at, status, order_code): the reading of each is asserted below
        ("2025-11-02 01:30:00", "completed", "72156"),  # the repeated autumn hour: earlier instant, flagged
        ("2025-11-02T01:30:00-05:00", "Completed", " 72157 "),  # the same wall time with its offset: not flagged
        ("2025-11-02 02:30:00", " CANCELED ", "a1"),  # after the repeated hour: one instant
        ("2025-03-09 02:30:00", "Lost", "0001u"),  # the DST gap
        ("2025-06-06 10:00:00.5Z", "sent", "72156"),  # fraction and Z
        ("2025-06-06 10:00:00 +25:00", "", "72156"),  # an impossible offset wins over the bad suffix
        ("2025-06-06 10:00:00x", None, "   "),  # a bad suffix; a blank required code
    ]
    lf = pl.LazyFrame(
        {
            "source_line": list(range(2, 2 + len(rows))),
            "order_id": [f"O{i}" for i in range(len(rows))],
            "patient_id": ["M"] * len(rows),
            "ordered_at": [r[0] for r in rows],
            "order_code": [r[2] for r in rows],
            "ordering_department": ["N"] * len(rows),
            "status": [r[1] for r in rows],
        },
        schema_overrides={"source_line": pl.Int64},
    )
    typed = load.typed_frame(lf, dict(lf.collect_schema()), contract, load_config(None)).collect()
    at = [None if v is None else v.strftime("%Y-%m-%dT%H:%M:%S.%f") for v in typed["ordered_at"]]
    assert at == [
        "2025-11-02T05:30:00.000000",
        "2025-11-02T06:30:00.000000",
        "2025-11-02T07:30:00.000000",
        None,
        "2025-06-06T10:00:00.500000",
        None,
        None,
    ]
    assert typed["_ambiguous_ordered_at"].to_list() == [True, False, False, False, False, False, False]
    errors = typed["_err_ordered_at"].to_list()
    assert errors[:3] == [None] * 3 and errors[4] is None
    assert "DST gap" in errors[3] and errors[5].startswith("impossible UTC offset") and errors[6].startswith("unparseable")
    assert typed["status"].to_list() == ["completed", "completed", "cancelled", "Lost", "ordered", None, None]
    assert typed["order_code"].to_list() == ["72156", "72157", "A1", "0001U", "72156", "72156", None]
    assert typed["_err_order_code_missing"].to_list() == [None] * 6 + ["required value missing"]


def test_other_site_time_zone(tmp_path):
    d = tmp_path / "in"
    write_csv(d / "procedures.csv", PROC_HEADER, [["A", "M", "2025-03-07 10:00:00", "62323", "Pain", "1970-01-01"]])
    write_csv(d / "imaging_orders.csv", ORDER_HEADER, [["O1", "M", "2025-06-06 10:00:00", "72156", "N", "", ""]])
    con, _ = _load(d, tmp_path, site_timezone="Europe/Berlin")
    assert con.execute("SELECT strftime(performed_at, '%H:%M') FROM src_procedures").fetchall() == [("09:00",)]


def test_codes_stay_text_bom_crlf_and_truncated_last_row(tmp_path):
    d = tmp_path / "in"
    write_csv(d / "procedures.csv", PROC_HEADER, [["A", "M", "2025-03-07 10:00:00", "62323", "Pain", "1970-01-01"]])
    body = "\r\n".join(
        [
            ",".join(ORDER_HEADER),
            "O1,M,2025-06-06 10:00:00,0001U,N,,completed",
            "O2,M,2025-06-06 10:00:00,30855-1,N,G97.1|g971,completed",
            "O3,M,2025-06-06 10:0",
        ]
    )  # cut off mid-row, no final newline
    (d / "imaging_orders.csv").write_bytes(b"\xef\xbb\xbf" + body.encode())
    con, loads = _load(d, tmp_path)
    codes = [r[0] for r in con.execute("SELECT order_code FROM src_imaging_orders ORDER BY order_id").fetchall()]
    assert codes == ["0001U", "30855-1"]
    assert any("cut off mid-row" in r[4] and r[1] == 4 for r in _rejects(con))
    assert loads["imaging_orders"].rows_rejected == 1


def test_column_map_from_config(tmp_path):
    d = tmp_path / "in"
    write_csv(
        d / "procedures.csv",
        ["ProcID", "MRN", "PerformedDTTM", "CPT", "Dept", "DOB", "Extra Col"],
        [["A", "M", "2025-03-07 10:00:00", "62323", "Pain", "1970-01-01", "kept"]],
    )
    write_csv(d / "imaging_orders.csv", ORDER_HEADER, [["O1", "M", "2025-06-06 10:00:00", "72156", "N", "", ""]])
    cfg = tmp_path / "site.toml"
    cfg.write_text(
        '[columns.procedures]\nprocedure_id = "ProcID"\npatient_id = "MRN"\nperformed_at = "PerformedDTTM"\n'
        'procedure_code = "CPT"\ndepartment = "Dept"\npatient_birth_date = "DOB"\n'
    )
    con = warehouse.connect(tmp_path / "wh.duckdb")
    load.load_inputs(con, load.find_inputs(d), load_config(cfg))
    row = con.execute('SELECT procedure_id, patient_id, procedure_code, "Extra Col" FROM src_procedures').fetchall()
    assert row == [("A", "M", "62323", "kept")]


def test_parquet_input_loads_like_csv(small_input, tmp_path):
    pq = tmp_path / "pq"
    pq.mkdir()
    for name in ("procedures", "imaging_orders", "diagnoses"):
        pl.read_csv(small_input / f"{name}.csv", infer_schema=False).write_parquet(pq / f"{name}.parquet")
    con_csv, _ = _load(small_input, tmp_path / "a")
    con_pq, _ = _load(pq, tmp_path / "b")
    q = "SELECT * EXCLUDE (source_file, source_line) FROM src_imaging_orders ORDER BY order_id"  # CSV lines count the header
    assert con_csv.execute(q).fetchall() == con_pq.execute(q).fetchall()


@pytest.mark.parametrize("table", ["procedures", "imaging_orders", "diagnoses"])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_typing_streams_without_in_memory_fallback(small_input, tmp_path, table, fmt):
    """Every typing expression runs on Polars' streaming engine. One that does not (e.g.
    `Expr.replace`) makes Polars hold the whole extract: 3.4 GB instead of 0.5 GB at 10M."""
    contract = next(c for c in load.CONTRACTS if c.name == table)
    path = small_input / f"{table}.csv"
    if fmt == "parquet":
        path = tmp_path / f"{table}.parquet"
        pl.read_csv(small_input / f"{table}.csv", infer_schema=False).write_parquet(path)
    f = load.InputFile(table, path, fmt)
    cfg = load_config(None)
    lf, schema = load.scan(f, load._column_map(f, contract, cfg))
    graph = load.typed_frame(lf, schema, contract, cfg).show_graph(
        engine="streaming", plan_stage="physical", raw_output=True, show=False
    )
    assert "in-memory engine fallback" in graph  # the legend: the marker below is still Polars' own
    fallback = [line for line in graph.splitlines() if 'fillcolor="0.0 0.3 1.0"' in line]
    assert fallback == [], fallback


@pytest.mark.parametrize(
    "ids, rising",
    [
        (["A1", "A2", "B1"], True),
        (["A1", None, "A2", None], True),  # empty ids are rejected rows of their own
        (["A1", "A1", "A2"], False),  # a repeat next to itself
        (["A1", None, "A1"], False),  # a repeat across an empty id
        (["B1", "A1", "C1"], False),  # unsorted but unique: the full check decides
        ([], True),
    ],
)
def test_ids_in_rising_order_skip_the_duplicate_search(tmp_path, ids, rising):
    path = tmp_path / "typed.parquet"
    pl.DataFrame({"order_id": ids}, schema={"order_id": pl.String}).write_parquet(path)
    assert load._strictly_increasing(path, "order_id") is rising


def test_duplicates_found_when_ids_are_not_in_order(tmp_path):
    d = tmp_path / "in"
    write_csv(
        d / "procedures.csv",
        PROC_HEADER,
        [
            ["PR2", "MRN-1", "2025-06-02 09:00:00", "62323", "Pain", "1970-05-05"],
            ["PR1", "MRN-2", "2025-06-02 10:00:00", "62323", "Pain", "1970-05-05"],
            ["PR2", "MRN-3", "2025-06-02 11:00:00", "62323", "Pain", "1970-05-05"],
        ],
    )
    write_csv(d / "imaging_orders.csv", ORDER_HEADER, [["O1", "MRN-1", "2025-06-06 10:00:00", "72156", "N", "", ""]])
    con, loads = _load(d, tmp_path)
    assert loads["procedures"].rows_rejected == 1
    assert [r for r in _rejects(con) if r[0] == "procedures"] == [
        ("procedures", 4, "procedure_id", "PR2", "duplicate procedure_id: first seen at line 2", "row_rejected")
    ]


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_a_blank_line_is_no_record_and_no_reject(tmp_path, encoding, caplog):
    """A blank line (an export's last line, or one in the middle), a line of delimiters alone: no record, so no
    'required value missing' reject and no row read; every other row keeps its own line number."""
    d = tmp_path / "in"
    write_csv(d / "procedures.csv", PROC_HEADER, [["A", "M", "2025-03-07 10:00:00", "62323", "Pain", "1970-01-01"]])
    body = "\r\n".join(
        [
            ",".join(ORDER_HEADER),
            "O1,M,2025-06-06 10:00:00,72156,Neuro,,completed",
            "",  # line 3
            ",,,,,,",  # line 4: the delimiters alone (a spreadsheet's empty row)
            "O2,,2025-06-06 11:00:00,72157,Neuro,,completed",  # line 5: a real row with a value missing
            "O3,M,2025-06-06 12:00:00,72157,Neuro,G97.1 – leak,completed",
            "",  # line 7 ends the file with a blank line
            "",
        ]
    )
    (d / "imaging_orders.csv").write_bytes(body.encode(encoding))
    config = tmp_path / "site.toml"
    config.write_text(f'[formats.imaging_orders]\nencoding = "{encoding}"\n', encoding="utf-8")
    con = warehouse.connect(tmp_path / "wh.duckdb")
    with caplog.at_level("INFO", logger="pipeline.ingest.load"):
        loaded = load.load_inputs(con, load.find_inputs(d, load_config(config)), load_config(config))
    loads = {ld.table: ld for ld in loaded}
    assert _rejects(con) == [("imaging_orders", 5, "patient_id", None, "required value missing", "row_rejected")]
    orders = loads["imaging_orders"]
    assert (orders.rows_read, orders.rows_loaded, orders.rows_rejected) == (3, 2, 1)
    lines = con.execute("SELECT order_id, source_line FROM src_imaging_orders ORDER BY 1").fetchall()
    assert lines == [("O1", 2), ("O3", 6)]
    assert "imaging_orders.csv: 3 blank lines skipped, no record on it (line 3, 4, 7)" in caplog.text


def _indication_codes_loaded(tmp_path, given: list[str]) -> list[str | None]:
    """The indication codes each of these cells loads as, one order a cell (in their order)."""
    d = tmp_path / "in"
    write_csv(d / "procedures.csv", PROC_HEADER, [["A", "M", "2025-03-07 10:00:00", "62323", "Pain", "1970-01-01"]])
    rows = [[f"O{i}", "M", "2025-06-06 10:00:00", "72156", "Neuro", codes, "completed"] for i, codes in enumerate(given)]
    write_csv(d / "imaging_orders.csv", ORDER_HEADER, rows)
    con, _ = _load(d, tmp_path)
    return [r[0] for r in con.execute("SELECT indication_codes FROM src_imaging_orders ORDER BY order_id").fetchall()]


def test_indication_codes_separated_by_commas_or_semicolons_read_as_the_contracts_list(tmp_path):
    """'G97.1, M54.50' is an EHR's usual list: the audits split on '|' alone, so a comma-separated list was one
    malformed code, and a case whose only leak evidence it held was lost (an onboarding review's finding)."""
    given = ["G97.1, M54.50", " ;G97.1 ;\tm54.5; ", ",, ", "G97.1|M54.5", "G97.1 M54.5", "G97.1 - leak, after LP"]
    got = _indication_codes_loaded(tmp_path, given)
    # a list of codes and spaces alone stays as delivered: the gate's format check names it
    assert got == ["G97.1|M54.50", "G97.1|m54.5", None, "G97.1|M54.5", "G97.1 M54.5", "G97.1 - leak|after LP"]


def test_a_code_list_with_an_empty_field_or_full_width_separators_reads_as_the_contracts_list(tmp_path):
    """'G97.1,,M54.5' (an empty field between two codes) read as 'G97.1||M54.5', and the full-width comma or
    semicolon of an East Asian keyboard, or a workbook cell's line breaks, stayed: the gate warned of a malformed
    list that holds two good codes."""
    given = ["G97.1,,M54.5", "G97.1 ; ;", ",G97.1", "G97.1\uff0cM54.5", "G97.1 \uff1b M54.5", "G97.1\r\n\r\nM54.5 \n"]
    got = _indication_codes_loaded(tmp_path, given)
    assert got == ["G97.1|M54.5", "G97.1", "G97.1", "G97.1|M54.5", "G97.1|M54.5", "G97.1|M54.5"]


def test_a_line_of_spaces_or_quoted_empties_between_delimiters_is_no_record(tmp_path, caplog):
    """A spreadsheet's empty row saved with a space in its cells, or each cell quoted empty: no record either. The
    time column's parse flag (`ordered_at_is_date`, false where the cell held spaces) is no value of the row; read
    as one, the line was rejected with three 'required value missing' rejects."""
    d = tmp_path / "in"
    write_csv(d / "procedures.csv", PROC_HEADER, [["A", "M", "2025-03-07 10:00:00", "62323", "Pain", "1970-01-01"]])
    body = "\n".join(
        [
            ",".join(ORDER_HEADER),
            "O1,M,2025-06-06 10:00:00,72156,Neuro,,completed",
            " , , ,,,,",  # line 3: spaces in the time cell too
            '"","","","","","",""',  # line 4: each cell quoted empty
            "O2,M,2025-06-06 12:00:00,72157,Neuro,,completed",
            "",
        ]
    )
    (d / "imaging_orders.csv").write_text(body, encoding="utf-8")
    with caplog.at_level("INFO", logger="pipeline.ingest.load"):
        con, loads = _load(d, tmp_path)
    assert _rejects(con) == []
    orders = loads["imaging_orders"]
    assert (orders.rows_read, orders.rows_loaded, orders.rows_rejected) == (2, 2, 0)
    assert "imaging_orders.csv: 2 blank lines skipped, no record on it (line 3, 4)" in caplog.text


def test_a_parquet_row_of_nulls_with_a_zoned_timestamp_column_is_no_record(tmp_path):
    """A Parquet file whose time column is typed with a zone: its parse flag is false on every row, a null one too;
    the row of nulls was rejected as a bad row."""
    d = tmp_path / "in"
    write_csv(d / "procedures.csv", PROC_HEADER, [["A", "M", "2025-03-07 10:00:00", "62323", "Pain", "1970-01-01"]])
    orders = pl.DataFrame(
        {
            "order_id": ["O1", None, "O2"],
            "patient_id": ["M", None, "M"],
            "ordered_at": ["2025-06-06 10:00:00", None, "2025-06-06 12:00:00"],
            "order_code": ["72156", None, "72157"],
            "ordering_department": ["Neuro", None, "Neuro"],
        }
    ).with_columns(pl.col("ordered_at").str.to_datetime().dt.replace_time_zone("UTC"))
    orders.write_parquet(d / "imaging_orders.parquet")
    con, loads = _load(d, tmp_path)
    assert _rejects(con) == []
    assert (loads["imaging_orders"].rows_read, loads["imaging_orders"].rows_loaded) == (2, 2)


@pytest.mark.parametrize("every_time_midnight", [True, False])
def test_a_diagnoses_file_of_midnights_is_read_as_dates(tmp_path, every_time_midnight):
    """A date column exported as a timestamp (SQL Server's DATETIME: 2025-06-03 00:00:00, every row): read as an
    instant, MRN-2's leak diagnosis on the day of the procedure (09:00) fell before it and the case was lost, with
    nothing said (an adopting site's review: 50 cases became 49). A load whose every time (ten or more) is the
    site's local midnight is dates, as a bare date is; one real time in it keeps them instants."""
    from conftest import DX_HEADER, write_small_input  # noqa: PLC0415

    d = write_small_input(tmp_path / "in")
    others = [
        [f"MRN-{50 + i}", "M54.50", f"2025-06-{10 + i:02d} {'00:00:00' if every_time_midnight or i else '08:15:00'}"]
        for i in range(9)
    ]
    write_csv(d / "diagnoses.csv", DX_HEADER, [["MRN-2", "G97.1", "2025-06-03 00:00:00"], *others])
    out = tmp_path / "out"
    r = run_cli("run", "--input", d, "--out", out, "--warehouse", tmp_path / "wh.duckdb", "--no-validate", "--audit", "csf_leak")
    assert r.returncode == 0, r.stderr
    cases = pl.read_csv(out / "csf_leak" / "cases.csv", infer_schema=False)
    audited = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)["order_id"].to_list()
    assert ("O4" in audited) is every_time_midnight, audited  # MRN-2's order: audited only when MRN-2 is a case
    assert cases.height == (2 if every_time_midnight else 1), cases
