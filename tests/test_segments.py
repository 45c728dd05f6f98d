"""A key of a table read from several files maps back to its own file and line (segments.place)."""

from __future__ import annotations

import duckdb

from pipeline.ingest.segments import Segment, place

# three files, the second of one line; keys 8 and 9 are in none (a gap: lines of no file the table names)
FILES = [
    Segment("/export/ServiceRequest.000.ndjson", 1, 3),
    Segment("/export/ServiceRequest.001.ndjson", 4, 4),
    Segment("s3a://bucket/export/Encounter.000.ndjson", 10, 12),
]
KEYS = [12, 1, 3, 4, 8, 10, 9]


def _placed(segments: list[Segment]) -> list[tuple]:
    con = duckdb.connect()
    con.execute("CREATE TABLE rejects AS SELECT unnest(?::BIGINT[]) AS source_line", [KEYS])
    at = place(con, "r.source_line", segments, "'extract.csv'")
    return con.execute(
        f"SELECT r.source_line, {at.file}, {at.line}, {at.where} FROM rejects AS r{at.join} ORDER BY r.source_line"
    ).fetchall()


def test_a_key_maps_to_its_own_file_and_line():
    assert _placed(FILES) == [
        (1, "/export/ServiceRequest.000.ndjson", 1, "ServiceRequest.000.ndjson line 1"),
        (3, "/export/ServiceRequest.000.ndjson", 3, "ServiceRequest.000.ndjson line 3"),
        (4, "/export/ServiceRequest.001.ndjson", 1, "ServiceRequest.001.ndjson line 1"),
        (8, None, None, None),
        (9, None, None, None),
        (10, "s3a://bucket/export/Encounter.000.ndjson", 1, "Encounter.000.ndjson line 1"),
        (12, "s3a://bucket/export/Encounter.000.ndjson", 3, "Encounter.000.ndjson line 3"),
    ]


def test_without_segments_the_key_is_the_line_of_the_one_file():
    assert _placed([]) == [(k, "extract.csv", k, f"line {k}") for k in sorted(KEYS)]


def test_ten_thousand_files_map_as_three_do():
    """The mapping is a join on a table of the files, not text a file: the query's text does not grow with them."""
    many = [Segment(f"/export/Encounter.{n:05d}.ndjson", 100 + 2 * n, 101 + 2 * n) for n in range(10_000)]
    con = duckdb.connect()
    at = place(con, "k", many)
    assert len(at.join + at.file + at.line + at.where) < 300
    keys = "(VALUES (100), (10101), (20099), (20100)) AS t(k)"
    assert con.execute(f"SELECT k, {at.file}, {at.line} FROM {keys}{at.join} ORDER BY k").fetchall() == [
        (100, "/export/Encounter.00000.ndjson", 1),
        (10101, "/export/Encounter.05000.ndjson", 2),
        (20099, "/export/Encounter.09999.ndjson", 2),
        (20100, None, None),
    ]
