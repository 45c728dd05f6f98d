"""Spark reading the inputs itself (pipeline/ingest/spark_read.py, spark_typed.py) against the Polars
parse: on the bad-input corpora (tests/test_bad_inputs.py), a time-zone and value corpus and Parquet
files read in several splits, the typed file, the rejects, the set-aside rows and the file summaries
are the same. Everything after the typed file (gate, merge, models, reports) is the same code on the
same files, so the verdicts follow; tests/test_spark_engine.py runs the deck through the CLI with a
local Spark reading its inputs (outputs byte-identical to the DuckDB run's).

One local[2] Spark for the whole session (tests/conftest.py: spark_models; the JVM start is the cost; a CLI
run on Spark costs a minute more, so none here). Needs Java 17, else skipped."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import duckdb
import polars as pl
import pytest
from conftest import DX_HEADER, ORDER_HEADER, write_csv
from test_bad_inputs import PROC_HEADER_X, _clean_tables, write_lines_input, write_messy_input

from pipeline.config import Config, load_config
from pipeline.errors import InputFileError
from pipeline.ingest import load, spark_read, spark_typed
from pipeline.ingest.contract import CONTRACT_BY_NAME
from pipeline.ingest.source_store import sql_type

pytestmark = pytest.mark.spark
LINE_KEY = "source_line"
SUMMARY = ("rows_read", "columns", "absent", "ambiguous_local_times", "first_month", "last_month", "unknown_values")


@pytest.fixture
def spark(spark_models):
    return spark_models  # the session of tests/conftest.py


def _same_as_polars(spark, inp: Path, tmp: Path, cfg: Config | None = None) -> dict:
    """Both parses of the folder; asserts they agree and returns the Spark one."""
    cfg = cfg or Config()
    inputs = load.find_inputs(inp, cfg)
    (tmp / "polars").mkdir()
    (tmp / "spark").mkdir()
    expected = load.prepare_inputs(inputs, cfg, tmp / "polars")
    got = load.prepare_inputs(inputs, cfg, tmp / "spark", typed_writer=spark_read.typed_writer(spark))
    assert sorted(got) == sorted(expected)
    for table, want in expected.items():
        for attr in ("typed_parquet", "rejects_parquet", "excluded_parquet"):
            a, b = pl.read_parquet(getattr(want, attr)), pl.read_parquet(getattr(got[table], attr))
            assert a.schema == b.schema, (table, attr, a.schema, b.schema)
            differ = [c for c in a.columns if not a[c].equals(b[c])]
            assert not differ, (table, attr, a.select(LINE_KEY, *differ).rows(), b.select(LINE_KEY, *differ).rows())
        for attr in SUMMARY:
            assert getattr(got[table], attr) == getattr(want, attr), (table, attr)
    return got


def _rejects(prepared) -> pl.DataFrame:
    return pl.read_parquet(prepared.rejects_parquet)


def test_the_messy_corpus_gives_the_same_rows_and_rejects(spark, tmp_path):
    got = _same_as_polars(spark, write_messy_input(tmp_path / "in"), tmp_path)
    reasons = _rejects(got["imaging_orders"])["reason"].to_list()
    assert any("DST gap" in r for r in reasons) and any("cut off mid-row" in r for r in reasons)  # the corpus is there


def test_a_folder_named_with_spaces_quotes_percent_and_brackets_is_read(spark, tmp_path):
    # Spark was handed the file's percent-encoded URI (Path.as_uri: %20 for a space), which Hadoop takes for the path
    # itself: PATH_NOT_FOUND; and [ ] { } * ? in a path are Hadoop glob characters
    odd = tmp_path / 'we\'ird "dir" %20 [x]{y}'
    got = _same_as_polars(spark, write_messy_input(odd), tmp_path)
    assert got["imaging_orders"].rows_read > 0


def test_records_with_line_breaks_get_their_physical_lines(spark, tmp_path):
    physical = write_lines_input(tmp_path / "in")
    write_csv(tmp_path / "in" / "patients.csv", ["patient_id", "birth_date"], [])  # a header, no rows: a file
    got = _same_as_polars(spark, tmp_path / "in", tmp_path)
    assert got["patients"].rows_read == 0
    lines = set(_rejects(got["imaging_orders"])["source_line"].to_list())
    assert {physical["+25:00"], physical["unparseable"], physical["duplicate"]} <= lines


def _write_times_and_values(d: Path) -> None:
    """Wall clocks across both DST changes, ISO spellings, offsets, a configured format, impossible
    numbers, partial birth dates and site words for coded values."""
    procs, orders, dx = _clean_tables()
    procs[0][2], procs[1][2], procs[2][2] = "2025-11-02 01:30:00", "2025-03-09 02:00:00", " 2025-11-02T01:59:59.5 "
    procs[3][6], procs[4][7], procs[5][6] = "3.0", "+2", "0x10"
    procs[6][5], procs[7][5], procs[8][5] = "07.03.1970", "1970-3-7", ""
    # partial birth dates: a year, a year-month (a leap February), spaces around, and a month 13 (no date)
    procs[9][5], procs[10][5], procs[11][5], procs[12][5] = "1980", "2000-02", " 1980-05 ", "1980-13"
    when = ["2025-07-02", "2025-07-02 10:00", "2025-07-02T10:00:00.123456789Z", "2025-07-02T10:00:00z",
            "2025-07-02T10:00:00+0530", "2025-07-02T10:00:00-05", "07/03/2025 10:15", "2025-11-02 01:00:00",
            "2025-13-02 10:00:00", "   ", "2025-07-02 10:00:00 PM", "2025-07-02T10:00Z", "2025-07-02 10:00-05:00",
            "2025-07-02T10:00+0530", "2025-07-02T10:00-"]  # fmt: skip
    for i, w in enumerate(when):
        orders[i][2] = w
    orders[20][6], orders[21][6], orders[22][6] = "Done", " CANCELED ", "lost"
    # code lists as EHRs write them: read as the contract's '|' (a tab and the spaces around a separator go too)
    lists = ["G97.1, M54.50", " ;G97.1 ;\tm54.5; ", ",,", "G97.1|M54.5", "G97.1 M54.5", "|"]
    lists += ["G97.1,,M54.5", "G97.1\uff0cM54.5", "G97.1\r\nM54.5"]  # a run of separators, full-width, a line break
    for i, codes in enumerate(lists, start=23):
        orders[i][5] = codes
    header = [*ORDER_HEADER[:-1], "order_status"]  # a column named as the config maps it
    write_csv(d / "procedures.csv", [*PROC_HEADER_X[:-3], "patient_birth_date", "needle_gauge", "attempts"], procs)
    write_csv(d / "imaging_orders.csv", header, orders)
    ages = [["MRN-1", "1970-01-01", "F"], ["MRN-2", "", "m"], ["MRN-3", "1980", "f"], ["MRN-4", "1980-05", "m"]]
    write_csv(d / "patients.csv", ["patient_id", "birth_date", "sex"], ages)
    rows = [[*r, "yes" if i % 3 == 0 else "N" if i % 3 == 1 else "maybe", str(i % 4 or "x")] for i, r in enumerate(dx)]
    write_csv(d / "diagnoses.csv", [*DX_HEADER, "is_principal", "diagnosis_rank"], rows)


def test_times_numbers_formats_and_value_maps_read_alike(spark, tmp_path):
    d = tmp_path / "in"
    _write_times_and_values(d)
    config = tmp_path / "site.toml"
    config.write_text(
        'site_timezone = "America/Chicago"\n'
        '[columns.imaging_orders]\nstatus = "order_status"\n'
        '[formats.imaging_orders]\ntimestamp_formats = ["%m/%d/%Y %H:%M"]\n'
        '[formats.procedures]\ndate_formats = ["%d.%m.%Y"]\n'
        '[values.imaging_orders.status]\n"Done" = "completed"\n',
        encoding="utf-8",
    )
    got = _same_as_polars(spark, d, tmp_path, load_config(config))
    for table, prepared in got.items():  # the contract's types (the Polars parse's file agrees: compared above)
        contract = CONTRACT_BY_NAME[table]
        typed = duckdb.sql(f"SELECT * FROM read_parquet('{prepared.typed_parquet}')")
        types = dict(zip(typed.columns, map(str, typed.types), strict=True))
        columns = [c for c in prepared.columns if c in contract.columns]
        assert {c: types[c] for c in columns} == {
            c: str(duckdb.sql(f"SELECT NULL::{sql_type(contract, c)}").types[0]) for c in columns
        }
    spans = pl.read_parquet(got["procedures"].typed_parquet).select("patient_birth_earliest", "patient_birth_latest")
    assert {(str(a), str(b)) for a, b in spans.drop_nulls().iter_rows()} == {
        ("1980-01-01", "1980-12-31"),
        ("2000-02-01", "2000-02-29"),
        ("1980-05-01", "1980-05-31"),
    }
    assert "1980-13" in _rejects(got["procedures"])["value"].to_list()  # no date: unparseable, as before
    orders = _rejects(got["imaging_orders"])
    assert "unparseable timestamp" in " ".join(orders["reason"].to_list())
    assert got["procedures"].ambiguous_local_times == 2  # 01:30 and 01:59:59.5 on the autumn night
    assert "DST gap" in " ".join(_rejects(got["procedures"])["reason"].to_list())
    assert _rejects(got["diagnoses"]).filter(pl.col("reason") == "not true or false").height > 0


def test_parquet_files_read_in_several_splits_keep_their_row_numbers(spark, tmp_path, caplog):
    d = tmp_path / "in"
    write_messy_input(tmp_path / "csv")
    for table in ("procedures", "imaging_orders", "diagnoses"):
        frame = pl.read_csv(tmp_path / "csv" / f"{table}.csv", infer_schema=False, truncate_ragged_lines=True)
        if table == "imaging_orders":  # instants and wall clocks as Parquet types, not text
            when = frame["ordered_at"].str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False)
            frame = frame.with_columns(when.alias("ordered_at"))
        if table == "procedures":
            when = frame["performed_at"].str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False).dt.replace_time_zone("UTC")
            frame = frame.with_columns(when.alias("performed_at"), frame["patient_birth_date"].str.to_date(strict=False))
        d.mkdir(exist_ok=True)
        frame.write_parquet(d / f"{table}.parquet", row_group_size=50)
    spark.session.conf.set("spark.sql.files.maxPartitionBytes", "2048")  # several splits per file
    try:
        with caplog.at_level(logging.INFO, logger="pipeline.ingest.spark_read"):
            got = _same_as_polars(spark, d, tmp_path)
    finally:
        spark.session.conf.unset("spark.sql.files.maxPartitionBytes")
    excluded = pl.read_parquet(got["imaging_orders"].excluded_parquet)["source_line"].to_list()
    assert excluded and max(excluded) > 500  # rows far into the file: numbered across the splits
    splits = re.search(r"imaging_orders.parquet on Spark \((\d+) splits\)", caplog.text)
    assert splits and int(splits.group(1)) > 2, caplog.text


def _error_of(prepare) -> str:
    with pytest.raises(InputFileError) as caught:
        prepare()
    return str(caught.value)


@pytest.mark.parametrize(
    ("line", "bad"),
    [(4, b"Neurolog\xe9"), (5, b"Neurology,extra,fields,here")],  # a byte that is not UTF-8; more fields than the header
)
def test_an_unreadable_record_stops_as_the_polars_parse_does(spark, tmp_path, line, bad):
    d = tmp_path / "in"
    procs, orders, dx = _clean_tables()
    write_csv(d / "procedures.csv", PROC_HEADER_X, procs)
    write_csv(d / "imaging_orders.csv", ORDER_HEADER, orders)
    lines = (d / "imaging_orders.csv").read_bytes().split(b"\n")
    lines[line - 1] = lines[line - 1].replace(b"Neurology", bad)
    (d / "imaging_orders.csv").write_bytes(b"\n".join(lines))
    inputs = load.find_inputs(d, Config())
    expected = _error_of(lambda: load.prepare_inputs(inputs, Config(), tmp_path))
    got = _error_of(lambda: load.prepare_inputs(inputs, Config(), tmp_path, typed_writer=spark_read.typed_writer(spark)))
    assert got == expected and f"line {line}" in got


def test_a_strftime_directive_spark_cannot_read_is_refused():
    assert spark_typed.spark_pattern("%m/%d/%Y %I:%M %p", "x") == "M'/'d'/'yyyy' 'h':'m' 'a"
    with pytest.raises(Exception, match="%j has no Spark reading"):
        spark_typed.spark_pattern("%Y-%j", "imaging_orders")


def test_blank_free_text_is_no_value_alike(spark, tmp_path):
    """A department (free text) that is empty, a quoted "", spaces or a tab is null on both parses, not a department
    named "" or "   " beside `(not recorded)`; a named one is kept as delivered, its spaces included."""
    d = tmp_path / "in"
    write_csv(
        d / "imaging_orders.csv",
        ORDER_HEADER,
        [
            ["O1", "MRN-1", "2025-06-06 10:00:00", "72156", "", "G97.1", "completed"],
            ["O2", "MRN-1", "2025-06-06 10:05:00", "72157", "   ", "G97.1", "completed"],
            ["O3", "MRN-1", "2025-06-06 10:10:00", "72158", "\t", "G97.1", "completed"],
            ["O4", "MRN-2", "2025-06-04 09:00:00", "72148", " Emergency ", "", "completed"],
        ],
    )
    text = (d / "imaging_orders.csv").read_text(encoding="utf-8").replace("72156,,", '72156,"",')  # a quoted ""
    (d / "imaging_orders.csv").write_text(text, encoding="utf-8")
    got = _same_as_polars(spark, d, tmp_path)
    typed = pl.read_parquet(got["imaging_orders"].typed_parquet).sort(LINE_KEY)
    assert typed["ordering_department"].to_list() == [None, None, None, " Emergency "]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_site_column_named_as_a_contract_column_the_config_maps_from_another_is_set_aside_alike(spark, tmp_path, fmt):
    """order_id mapped from ORDER_NO beside a column of the site's own named order_id: both parses read ORDER_NO (the
    Polars parse had stopped on the name twice, DuplicateError; Spark read two columns of one name)."""
    d = tmp_path / "in"
    header = ["ORDER_NO", *ORDER_HEADER[1:], "order_id"]
    rows = [[f"O{i}", "MRN-1", "2025-06-06 10:00:00", "72156", "Neurology", "G97.1", "completed", f"9876{i}"] for i in range(3)]
    if fmt == "csv":
        write_csv(d / "imaging_orders.csv", header, rows)
    else:
        d.mkdir()
        pl.DataFrame(rows, schema=header, orient="row").write_parquet(d / "imaging_orders.parquet")
    config = tmp_path / "site.toml"
    config.write_text('[columns.imaging_orders]\norder_id = "ORDER_NO"\n', encoding="utf-8")
    got = _same_as_polars(spark, d, tmp_path, load_config(config))
    assert pl.read_parquet(got["imaging_orders"].typed_parquet)["order_id"].to_list() == ["O0", "O1", "O2"]
