"""A whole NDJSON file read by DuckDB's own reader gives the rows, keys and problems the line-by-line reading gives.

`pipeline.ingest.fhir.whole` takes a file whole only when every line is one resource it can
read, gzip-compressed or not; any other file (a blank line, a line that is not JSON, an element
of another shape, a gzip file cut short) is read line by line. Either way the extracted rows must be the same, so each
file here is extracted both ways and compared row by row, keys included. The ServiceRequests
streamed into imaging_orders (`orders`: every file whole in one query, keyed by position) must
give the rows, rejects and left-out counts of the files read line by line into parts.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from fhir_export import export_extract
from test_fhir_input import SR_FILE, _lines, _sr

from pipeline.config import load_config
from pipeline.deck import deck_files, write_deck_input
from pipeline.errors import InputFileError
from pipeline.ingest import load
from pipeline.ingest.fhir import export, extract, lines, prepare, whole
from pipeline.ingest.inputs import find_inputs
from pipeline.logs import JsonFormatter


def _extracted(folder: Path, resource_type: str, paths: list[Path], read_whole: bool, work: Path):
    """(rows ordered by key, segments, records, files read whole) of one extraction."""
    cfg = load_config(site_timezone="America/New_York")
    work.mkdir(parents=True, exist_ok=True)
    con = prepare.connect(work)
    try:
        extract.set_variables(con, cfg.fhir, prepare.local_code_systems(cfg, folder))
        done = extract.extract(con, resource_type, paths, [str(p) for p in paths], 7, work / "x.parquet", read_whole)
        rows = con.execute(f"SELECT * FROM ({done.relation}) ORDER BY key").fetchall()
    finally:
        con.close()
    return rows, done.segments, done.records, done.whole_files


def _both_ways(folder: Path, resource_type: str, paths: list[Path], tmp_path: Path) -> int:
    """Files read whole; fails unless both readings give the same rows, segments and counts."""
    whole = _extracted(folder, resource_type, paths, True, tmp_path / "whole")
    by_line = _extracted(folder, resource_type, paths, False, tmp_path / "lines")
    assert by_line[3] == 0
    assert whole[:3] == by_line[:3]
    return whole[3]


@pytest.fixture(scope="module")
def deck_export(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("whole")
    write_deck_input(base / "csv", [f for f in deck_files() if f.audit == "csf_leak"])  # the deck FHIR carries whole
    export_extract(base / "csv", base / "fhir", lines_per_file=25)
    return base / "fhir"


@pytest.mark.parametrize("resource_type", export.RESOURCE_TYPES)
def test_the_deck_export_reads_the_same_whole_as_line_by_line(deck_export, resource_type, tmp_path):
    paths = export.read_export(deck_export).of(resource_type)
    whole_files = _both_ways(deck_export, resource_type, paths, tmp_path)
    # every file is taken whole, the compressed one too: the fast way is the usual way
    assert whole_files == len(paths)
    assert resource_type != "ServiceRequest" or any(export.is_gzip(p) for p in paths)


def _patients(folder: Path) -> None:
    (folder / "Patient.000.ndjson").write_text(_lines({"resourceType": "Patient", "id": "MRN-1", "birthDate": "1970-01-01"}))


MESSY = {  # file content -> read whole?
    "every kind of bad line (SR_FILE)": (_lines(*(item for item, _ in SR_FILE)), False),
    "a line that is JSON null": (_lines(_sr("S1"), "null", _sr("S2")), True),
    "an empty object": (_lines(_sr("S1"), "{}"), True),
    "a line that is an array": (_lines(_sr("S1"), "[1, 2]"), False),
    "subject a string, not a Reference": (_lines(_sr("S1"), _sr("S2", subject="Patient/MRN-1")), False),
    "code.coding an object, not a list": (_lines(_sr("S1", code={"coding": {"system": "x", "code": "1"}})), False),
    "a number where a text is": (_lines(_sr("S1", status=5, priority=True)), True),
    "a repeated key": (_lines(_sr("S1"), '{"resourceType":"ServiceRequest","id":"S2","id":"S3"}'), False),
    "two resources on one line": (_lines(_sr("S1")).strip() + json.dumps(_sr("S2")) + "\n", False),
    "a blank line at the end": (_lines(_sr("S1"), _sr("S2"), "   "), False),
    "no newline after the last line": (_lines(_sr("S1"), _sr("S2")).rstrip("\n"), True),
    "Windows line ends": (_lines(_sr("S1"), _sr("S2")).replace("\n", "\r\n"), True),
    "an unpaired surrogate escape": (_lines(_sr("S1"), _sr("S2", priority="\\ud800")).replace("\\\\", "\\"), False),
}


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("case", sorted(MESSY))
def test_a_messy_file_reads_the_same_whichever_way_it_is_read(case, compressed, tmp_path):
    content, taken_whole = MESSY[case]
    folder = tmp_path / "export"
    folder.mkdir()
    _patients(folder)
    first = folder / "ServiceRequest.000.ndjson"
    first.write_text(_lines(_sr("O1"), _sr("O2")))
    second = folder / ("ServiceRequest.001.ndjson.gz" if compressed else "ServiceRequest.001.ndjson")
    second.write_bytes(gzip.compress(content.encode()) if compressed else content.encode())
    assert _both_ways(folder, "ServiceRequest", [first, second], tmp_path) == 1 + taken_whole


def test_a_gzip_of_several_members_reads_the_same_whichever_way_it_is_read(tmp_path):
    """gzip files may be concatenated (each member a piece of the text): every line must be read, once."""
    folder = tmp_path / "export"
    folder.mkdir()
    _patients(folder)
    path = folder / "ServiceRequest.000.ndjson.gz"
    path.write_bytes(gzip.compress(_lines(_sr("S1"), _sr("S2")).encode()) + gzip.compress(_lines(_sr("S3")).encode()))
    _both_ways(folder, "ServiceRequest", [path], tmp_path)
    rows, *_ = _extracted(folder, "ServiceRequest", [path], True, tmp_path / "again")
    assert [r[3] for r in rows] == ["S1", "S2", "S3"]


def test_a_gzip_cut_short_is_read_line_by_line_and_stops_the_run(tmp_path):
    """DuckDB may read the first part of a gzip cut short; the file must not be taken whole with lines missing."""
    folder = tmp_path / "export"
    folder.mkdir()
    _patients(folder)
    path = folder / "ServiceRequest.000.ndjson.gz"
    text = "".join(_lines(_sr(f"S{n}", note=[{"text": str(n) * 50}])) for n in range(20_000))
    data = gzip.compress(text.encode())
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="cannot be read as lines"):
        _extracted(folder, "ServiceRequest", [path], True, tmp_path / "work")


def test_a_large_file_read_whole_keeps_every_line_number(tmp_path):
    """DuckDB reads a large file in pieces on every core: each row must still get its own line."""
    folder = tmp_path / "export"
    folder.mkdir()
    _patients(folder)
    path = folder / "ServiceRequest.000.ndjson"
    count = 150_000  # ~40 MB: more than one of the reader's buffers
    with path.open("w") as fh:
        for n in range(1, count + 1):
            fh.write(json.dumps(_sr(f"L{n}", note=[{"text": "x" * (n % 300)}]), separators=(",", ":")) + "\n")
    rows, segments, records, whole_files = _extracted(folder, "ServiceRequest", [path], True, tmp_path / "work")
    assert whole_files == 1 and records == count and len(rows) == count
    assert [(r[0], r[3]) for r in rows] == [(6 + n, f"L{n}") for n in range(1, count + 1)]
    assert (segments[0].first_key, segments[0].last_key) == (7, 6 + count)


def test_a_file_the_reader_stops_at_is_logged_without_its_values(tmp_path, caplog):
    """DuckDB's error quotes the line; the log must not (a patient reference is among the values)."""
    folder = tmp_path / "export"
    folder.mkdir()
    path = folder / "ServiceRequest.000.ndjson"
    path.write_text(_lines(_sr("S1", subject="Patient/SECRET-MRN-77")))
    caplog.set_level("INFO", logger="pipeline.ingest.fhir.whole")
    rows, *_, whole_files = _extracted(folder, "ServiceRequest", [path], True, tmp_path / "work")
    assert whole_files == 0 and len(rows) == 1
    assert "read line by line" in caplog.text and "SECRET-MRN-77" not in caplog.text


# ---------------------------------------------------------------- the ServiceRequests streamed (orders.py)


def _prepared(folder: Path, scratch: Path) -> tuple[pl.DataFrame, pl.DataFrame, list[dict]]:
    """imaging_orders as the loader holds it: its typed rows, its rejects, its left-out counts."""
    cfg = load_config(site_timezone="America/New_York")
    scratch.mkdir()
    orders = load.prepare_inputs(find_inputs(folder, cfg), cfg, scratch)["imaging_orders"]
    return pl.read_parquet(orders.typed_parquet), pl.read_parquet(orders.rejects_parquet), orders.left_out


def test_the_stream_gives_what_the_files_read_line_by_line_give(deck_export, tmp_path, monkeypatch, caplog):
    folder = tmp_path / "export"
    shutil.copytree(deck_export, folder)
    # a rejected line and a left-out one, in the last file (a row set aside after rows the loader already has)
    last = sorted(folder.glob("ServiceRequest.*.ndjson"))[-1]
    last.write_text(last.read_text() + _lines(_sr("S-BAD", status=None), _sr("S-DRAFT", status="draft")))
    with caplog.at_level(logging.INFO, logger="pipeline.ingest.fhir.prepare"):
        streamed = _prepared(folder, tmp_path / "streamed")
    files = len(export.read_export(folder).of("ServiceRequest"))
    assert any(
        f"read ServiceRequest: {streamed[0].height + 2:,} resources in {files:,} files, {files:,} read whole" in m
        for m in caplog.messages
    )
    monkeypatch.setattr(whole, "took_every_line", lambda *_a, **_k: False)  # no file whole: every line numbered
    with caplog.at_level(logging.INFO, logger="pipeline.ingest.fhir.orders"):
        by_line = _prepared(folder, tmp_path / "by_line")
    assert any("read again, file by file" in m for m in caplog.messages)
    rows, rejects, left_out = streamed
    assert rows.height > 50 and rejects.filter(pl.col("reason").str.contains("ServiceRequest.status")).height == 1
    assert left_out == [{"resource": "ServiceRequest", "reason": "ServiceRequest.status draft", "count": 1}]
    assert rows.equals(by_line[0]) and rejects.equals(by_line[1]) and left_out == by_line[2]


def test_empty_servicerequest_files_give_no_reader_and_change_nothing(deck_export, tmp_path, monkeypatch):
    """An export with many empty ServiceRequest files (10,000 of them grew the stream's one query past 10 GB before
    it ran): an empty file has no line, so the stream's query reads none of them, and the rows are those without."""
    plain = _prepared(deck_export, tmp_path / "plain")
    folder = tmp_path / "export"
    shutil.copytree(deck_export, folder)
    for i in range(200):
        (folder / f"ServiceRequest.9{i:04d}.ndjson").write_bytes(b"")
    readers, source = [], whole.source
    monkeypatch.setattr(whole, "source", lambda query, paths, *a: readers.extend(paths) or source(query, paths, *a))
    padded = _prepared(folder, tmp_path / "padded")
    assert readers and all(p.stat().st_size for p in readers if p.name.startswith("ServiceRequest"))
    assert padded[0].equals(plain[0]) and padded[1].equals(plain[1]) and padded[2] == plain[2]


def test_a_reason_reference_in_any_file_adds_its_conditions_codes(tmp_path, caplog):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "Patient.000.ndjson").write_text(_lines({"resourceType": "Patient", "id": "MRN-1", "birthDate": "1970-01-01"}))
    coded = {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "G97.1"}]}
    condition = {"resourceType": "Condition", "id": "pdph", "subject": {"reference": "Patient/MRN-1"}, "code": coded}
    (folder / "Condition.000.ndjson").write_text(_lines(condition | {"recordedDate": "2025-03-01"}))
    procedure = {"resourceType": "Procedure", "id": "PR1", "status": "completed", "subject": {"reference": "Patient/MRN-1"}}
    cpt = {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "62323"}]}
    (folder / "Procedure.000.ndjson").write_text(_lines(procedure | {"code": cpt, "performedDateTime": "2025-03-02"}))
    refer = {"reasonReference": [{"reference": "Condition/pdph"}, {"reference": "Condition/unknown"}]}
    (folder / "ServiceRequest.000.ndjson").write_text(_lines(_sr("S1"), _sr("S2", **refer)))
    headache = [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R51.9"}]}]
    (folder / "ServiceRequest.001.ndjson").write_text(_lines(_sr("S3", reasonCode=headache, **refer), _sr("S4")))
    (folder / "ServiceRequest.002.ndjson").write_text("")  # an empty file: no line, and no reason to read again
    with caplog.at_level(logging.INFO, logger="pipeline.ingest.fhir"):
        rows = _prepared(folder, tmp_path / "scratch")[0]
    assert "read ServiceRequest: 4 resources in 3 files, 2 read whole" in caplog.messages
    assert not any("read again" in m for m in caplog.messages)
    codes = dict(zip(rows["order_id"], rows["indication_codes"], strict=True))
    assert codes["S2"] == "G97.1" and codes["S3"] == "R51.9|G97.1"  # reasonCode first, then the Conditions
    assert codes["S1"] is None and codes["S4"] is None


def test_the_extracted_parts_are_written_uncompressed(deck_export, tmp_path):
    # scratch parts read back a few times and deleted: lz4 cost more to write and read than it saved
    paths = export.read_export(deck_export).of("Encounter")
    _extracted(deck_export, "Encounter", paths, True, tmp_path)
    parts = sorted(tmp_path.glob("x.*.parquet"))
    assert parts
    for part in parts:
        meta = pq.ParquetFile(part).metadata
        compressions = {
            meta.row_group(g).column(c).compression for g in range(meta.num_row_groups) for c in range(meta.num_columns)
        }
        assert compressions == {"UNCOMPRESSED"}


# ---------------------------------------------------------------- a long read says it is alive (lines.py)


def _progress(caplog) -> list[dict]:
    """The read_progress events logged, as --log-format json writes them."""
    events = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    return [
        {k: e[k] for k in ("message", "event", "resource_type", "lines", "file")} for e in events if e["event"] == "read_progress"
    ]


def _broken_gzip(tmp_path: Path) -> Path:
    """A ServiceRequest file the reader stops at (its second line is not JSON): read line by line, gzip."""
    folder = tmp_path / "export"
    folder.mkdir()
    path = folder / "ServiceRequest.001.ndjson.gz"
    path.write_bytes(gzip.compress((_lines(_sr("S1")) + "{broken\n" + _lines(_sr("S2"), _sr("S3"))).encode(), mtime=0))
    return path


def test_a_long_line_by_line_read_logs_how_far_it_has_come(tmp_path, monkeypatch, caplog):
    """A file read line by line says so each time PROGRESS_SECONDS have passed (lowered here to 0: at every batch of
    lines), naming its type, its lines so far and the file, as one JSON object under --log-format json."""
    path = _broken_gzip(tmp_path)
    monkeypatch.setattr(lines, "PROGRESS_SECONDS", 0.0)
    caplog.set_level(logging.INFO, logger="pipeline")
    rows, *_, whole_files = _extracted(path.parent, "ServiceRequest", [path], True, tmp_path / "work")
    assert whole_files == 0 and len(rows) == 4
    assert _progress(caplog) == [
        {
            "message": f"read ServiceRequest line by line: 4 lines so far ({path})",
            "event": "read_progress",
            "resource_type": "ServiceRequest",
            "lines": 4,
            "file": str(path),
        }
    ]


def test_a_fast_line_by_line_read_logs_no_progress(tmp_path, caplog):
    path = _broken_gzip(tmp_path)
    caplog.set_level(logging.INFO, logger="pipeline")
    rows, *_ = _extracted(path.parent, "ServiceRequest", [path], True, tmp_path / "work")
    assert len(rows) == 4 and any("read line by line" in m for m in caplog.messages)
    assert _progress(caplog) == []


def test_the_blank_check_agrees_with_trim_on_every_character_trim_can_take():
    """fhir_blank trims only a value whose first character trim could take (' ' or from U+00A0 on): it must say
    blank exactly where nullif(trim(v), '') IS NULL does, for each character alone and in front of a letter."""
    import duckdb

    con = duckdb.connect()
    con.execute(extract.sql("macros"))
    # trim's whitespace ends at U+3000: every character up to just past it, alone, doubled and before a letter
    con.execute(
        "CREATE TABLE v AS SELECT unnest([c, c || c, c || 'a']) AS x FROM "
        "(SELECT chr(i::INTEGER) AS c FROM range(1, 12544) t(i) WHERE i NOT BETWEEN 55296 AND 57343)"
    )
    con.executemany("INSERT INTO v VALUES (?)", [[x] for x in (None, "", " ", "  a", "a ", "\u00a0\u3000", "\u00a0x")])
    differ = con.execute("SELECT x FROM v WHERE (nullif(trim(x), '') IS NULL) <> fhir_blank(x)").fetchall()
    assert differ == []
    assert con.execute("SELECT count(*) FILTER (fhir_blank(x)) FROM v").fetchall()[0][0] > 30  # it does find blanks


def test_lines_read_line_by_line_reach_duckdb_in_tables_of_bounded_bytes(tmp_path):
    """The hostile review: 32 lines of 60 MiB in 2.3 MB of gzip went to DuckDB as one table (Polars hands over lines
    by count), 7 GB of memory. A table now holds the lines that start within CHUNK_BYTES of its text (a longer line
    alone); every line still comes once, in order, with its key."""
    import gzip

    from pipeline.ingest.fhir.lines import LINE_TEXT, NumberedLines

    texts = [("x" * 3_000 if n % 5 == 0 else f'{{"n":{n}}}') for n in range(60)]
    path = tmp_path / "ServiceRequest.000.ndjson.gz"
    path.write_bytes(gzip.compress("".join(t + "\n" for t in texts).encode()))
    most = 4_000
    chunks = list(NumberedLines([path], ["ServiceRequest.000.ndjson.gz"], first_key=1).chunks(most_bytes=most))
    assert len(chunks) > 1
    for chunk in chunks:
        lengths = [len(t) for t in chunk.column(LINE_TEXT).to_pylist()]
        assert sum(lengths) - lengths[-1] <= most, lengths  # all but its last line start within the stretch
    assert [t for c in chunks for t in c.column(LINE_TEXT).to_pylist()] == texts
    assert [k for c in chunks for k in c.column("key").to_pylist()] == list(range(1, 61))
