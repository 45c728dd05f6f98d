"""The ServiceRequests parsed, joined into imaging_orders rows and handed to the loader in one stream.

No extracted part is written and read back (writing it alone cost ~1 CPU-s per million orders):
the files go through extract_ServiceRequest.sql and table_imaging_orders.sql in one DuckDB query,
run last (every type it looks up is extracted by then), whose Arrow batches go straight to the
loader's typing. The rows the table does not load (rejected, left out, or naming a Patient the
export lacks: a few percent) are set aside, slim, and the table's rejects and left-out counts are
queried from them once the stream has ended (`aside_view`). An order whose reasonReference names
Conditions has their codes added batch by batch, on a second cursor (sql/reason_codes.sql).

The files are read whole by DuckDB's NDJSON reader, all in one query (the lookups' hash tables are
built once: at 10M orders, one per file would hash eleven million encounters eleven times); a
row's key is its position in the stream (the readers keep the files' order). An export cut into
many files (more than `whole.OWN_READER`) is extracted first, as the other types are, and its parts streamed.
When the reader stops at a line, or a file's rows are not its lines (`whole`), the stream starts
again (`Restart`, bad input only) from the files extracted as the other types are (`extract`: whole or line by line,
into Parquet parts that key and name each line).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from polars.io.plugins import register_io_source

from pipeline.ingest.fhir import extract, whole
from pipeline.ingest.fhir.extract import sql
from pipeline.ingest.fhir.lines import SCHEMA
from pipeline.ingest.segments import Segment
from pipeline.sqltext import literal

log = logging.getLogger(__name__)

T = TypeVar("T")
EXTRACTED = "fhir_servicerequest"  # the view the table query reads (the files' extract query; then the rows set aside)
SIDE = ("kept", "problem", "left_out", "reason_codes", "reason_condition_ids")  # the stream's columns, not the table's
ASIDE = ("source_line", "problem", "left_out", "patient_id")  # what the rejects and counts need of a row set aside
BATCH_ROWS = 1 << 18
# how far DuckDB may run ahead of the loader's typing: at its 10 MiB (less than one batch) it waited on
# each batch (10M orders: the parse stage 74 s of wall for 108 CPU-s; with 256 MB 54 s for 106, as 1 GB)
STREAM_BUFFER = "256MB"


class Restart(Exception):
    """The reader could not take every file whole: the stream starts again from the extracted files."""


class OrderStream:
    """The imaging_orders rows of the ServiceRequest files, keyed from first_key on, as a lazy frame the loader sinks.

    table_query: table_imaging_orders.sql with its department filled; lines_of: a file's lines, if known (its fingerprint)."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        paths: list[Path],
        labels: list[str],
        first_key: int,
        table_query: str,
        work: Path,
        lines_of: Callable[[Path], int | None] | None = None,
    ):
        self.con, self.paths, self.labels, self.first_key = con, paths, labels, first_key
        self.table_query, self.work, self.lines_of = table_query, work, lines_of
        self.extract_query = sql("extract_ServiceRequest")
        # the files with a line: an empty one has no row to give (the query of 10,000 empty files' readers took 10 GB)
        self.read_paths = [path for path in paths if path.stat().st_size]
        self.read_labels = [label for path, label in zip(paths, labels, strict=True) if path.stat().st_size]
        # a few files: one reader each, keyed by the file's index until the stream gives a row its position. Many
        # files are extracted first, by one reader into one part whose rows carry their keys (`_frames`), then
        # streamed: one reader of many files does not keep their order through the table query's joins (the joins'
        # output follows the reader's batches: each small file's rows came in two runs)
        whole_query = whole.query_of(con, self.extract_query)
        self.whole_source = (
            whole.union([whole.source(whole_query, [path], i) for i, path in enumerate(self.read_paths)])
            if 0 < len(self.read_paths) <= whole.OWN_READER
            else ""
        )
        self.extracted: extract.Extracted | None = None  # after a Restart: the files extracted into parts
        self._cursor: duckdb.DuckDBPyConnection | None = None
        con.execute(f"SET streaming_buffer_size = {literal(STREAM_BUFFER)}")
        con.register("lines", pa.Table.from_batches([], SCHEMA))
        try:
            self._use(self.extract_query)
            empty = con.sql(table_query).limit(0).to_arrow_table()
        finally:
            con.unregister("lines")
        self.aside_schema = empty.select(list(ASIDE)).schema
        self.schema = pl.from_arrow(empty.drop_columns(list(SIDE))).schema
        self._reset()

    def _reset(self) -> None:
        self.segments: list[Segment] = []
        self.aside: list[pa.RecordBatch] = []
        self.records, self.whole_files = 0, 0

    def write(self, sink: Callable[[pl.LazyFrame], T]) -> T:
        """sink(the rows): what it returns. Run again from the extracted files when a file cannot be read whole."""
        while True:
            self._reset()
            try:
                return sink(register_io_source(self._source, schema=self.schema))
            except Restart:
                log.info("ServiceRequest: not every file could be read whole; read again, file by file")
                self.extracted = self._extract()

    def _extract(self) -> extract.Extracted:
        """The files extracted as the other types are: into Parquet parts that key and name each line."""
        parts = self.work / "ServiceRequest.parquet"
        return extract.extract(self.con, "ServiceRequest", self.paths, self.labels, self.first_key, parts, True, self.lines_of)

    def aside_view(self) -> None:
        """The rows set aside as the view fhir_servicerequest (key, problem, left_out, patient_id): what tables' rejects read."""
        self.con.register("fhir_orders_aside", pa.Table.from_batches(self.aside, self.aside_schema))
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {EXTRACTED} AS "
            "SELECT source_line AS key, problem, left_out, patient_id FROM fhir_orders_aside"
        )

    def _source(self, with_columns: list[str] | None, predicate, n_rows: int | None, _batch_size) -> Iterator[pl.DataFrame]:
        left = n_rows
        for frame in self._frames():
            if with_columns is not None:
                frame = frame.select(with_columns)
            if predicate is not None:
                frame = frame.filter(predicate)
            if left is not None:
                frame, left = frame.head(left), left - min(left, frame.height)
            if frame.height:
                yield frame
            if left == 0:
                return

    def _frames(self) -> Iterator[pl.DataFrame]:
        if self.extracted is None and not self.whole_source:  # many files, or none with a line
            self.extracted = self._extract()
        if self.extracted is not None:
            done = self.extracted
            self._use(done.relation)
            yield from self._stream(None)
            self.segments, self.records, self.whole_files = done.segments, done.records, done.whole_files
            return
        rows = np.zeros(len(self.read_paths), dtype=np.int64)  # each file's rows, as they stream
        self._use(self.whole_source)
        try:
            yield from self._stream(rows)
        except (duckdb.Error, pa.ArrowException, OSError) as exc:  # the reader's error, as DuckDB or through Arrow
            whole.stopped(EXTRACTED, exc)
            raise Restart from None
        key = self.first_key
        for path, label, n in zip(self.read_paths, self.read_labels, rows.tolist(), strict=True):
            if not whole.took_every_line(path, n, self.lines_of):
                raise Restart
            self.segments.append(Segment(label, key, key + n - 1))
            key, self.whole_files = key + n, self.whole_files + 1
        self.records = key - self.first_key

    def _use(self, source: str) -> None:
        """fhir_servicerequest, what the table query reads: the extract query over the files, or their parts."""
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {EXTRACTED} AS {source}")

    def _stream(self, file_rows: np.ndarray | None) -> Iterator[pl.DataFrame]:
        """The table query's rows, kept ones as frames. file_rows: the whole files' rows, whose key is their file's
        index: counted per file, and keyed by their position (the reader keeps the files' order)."""
        streamed = 0
        for batch in self.con.sql(self.table_query).to_arrow_reader(BATCH_ROWS):
            if file_rows is not None:
                index = batch.column(0).to_numpy()
                if index.size and (np.any(np.diff(index) < 0) or index[0] < np.flatnonzero(file_rows).max(initial=0)):
                    log.warning("ServiceRequest: DuckDB's reader gave the files' rows out of order")
                    raise Restart
                file_rows += np.bincount(index, minlength=file_rows.size)
                keys = np.arange(self.first_key + streamed, self.first_key + streamed + batch.num_rows, dtype=np.int64)
                batch = batch.set_column(0, "source_line", pa.array(keys))
            streamed += batch.num_rows
            kept = batch.column("kept")
            if not pc.all(kept).as_py():
                self.aside.append(batch.filter(pc.invert(kept)).select(list(ASIDE)))
                batch = batch.filter(kept)
            if batch.num_rows:
                yield self._with_reason_codes(pl.from_arrow(batch.drop_columns(["kept", "problem", "left_out"])))

    def _with_reason_codes(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The batch's table columns; orders whose reasonReference names kept Conditions get their codes too."""
        naming = frame.filter(pl.col("reason_condition_ids").is_not_null())
        if naming.height:
            if self._cursor is None:  # the stream holds the connection: a second one sees its views and macros
                self._cursor = self.con.cursor()
            self._cursor.register("fhir_reason_batch", naming.select("source_line", "reason_codes", "reason_condition_ids"))
            try:
                codes = pl.from_arrow(self._cursor.sql(sql("reason_codes")).to_arrow_table())
            finally:
                self._cursor.unregister("fhir_reason_batch")
            frame = frame.update(codes, on="source_line", include_nulls=True)
        return frame.drop("reason_codes", "reason_condition_ids")
