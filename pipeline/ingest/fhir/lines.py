"""The lines of a resource type's files, numbered, as one Arrow stream DuckDB reads.

Each NDJSON record is one physical line, so a line number is all a reject needs to point
into the file. Polars reads the lines (``scan_lines``: gzip too, any length, in batches);
each row gets a key that is unique across the whole export: the file's base (the lines
of every file read before it) plus its line number. The file each key range came from is
recorded as a `segments.Segment` while the stream runs; `segments` turns a key back into
(file, line) for the rejects.
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
import pyarrow as pa

from pipeline.errors import InputFileError
from pipeline.ingest.fhir import whole
from pipeline.ingest.fhir.export import UTF8_FIX, is_gzip
from pipeline.ingest.segments import Segment
from pipeline.logs import event
from pipeline.wording import counted

KEY, LINE_TEXT = "key", "line"
# string_view: Polars' own string layout, handed over without a copy (DuckDB reads it as it is)
SCHEMA = pa.schema([(KEY, pa.int64()), (LINE_TEXT, pa.string_view())])
# lines per table handed to DuckDB: ~250 MB of ServiceRequests, enough for every core to share
CHUNK_ROWS = 500_000
# and at most this many bytes of them (a line longer than it goes alone): 32 lines of 60 MiB, 2.3 MB of gzip, took
# 7 GB of memory as one table (the hostile review); the usual lines reach CHUNK_ROWS first
CHUNK_BYTES = 128 << 20
# the longest line the lines' way reads: no resource the audit reads comes near it, and Polars holds a line
# at many times its length (a 2 GB line, 2 MB of gzip, asked for 33 GB and aborted the run)
LONGEST_LINE = 64 << 20
# a file read this long line by line says how far it has come, then again each time as long: a 0.73 MB gzip of one
# line broken 2M times took 38-48 s (11M lines: ~4 minutes) with nothing in the log, which an operator cannot tell
# from a hang. Asked between batches of lines, so a line is said at the first batch after the time is up
PROGRESS_SECONDS = 10.0


class NumberedLines:
    """Lines of several files, in order, with global keys; `segments` fills as they are read."""

    def __init__(
        self, paths: list[Path], labels: list[str], first_key: int, structure: dict | None = None, resource_type: str = ""
    ):
        """structure: the elements the type's query reads (whole.structure_of), when each line must be asked whether
        json_transform would misread one of them (given twice, or in another shape: whole.misread, for a file DuckDB's
        reader stopped at); `misread` lists them."""
        self.paths, self.labels, self.next_key = paths, labels, first_key
        self.structure, self.resource_type = structure, resource_type
        self.segments: list[Segment] = []
        self.records = 0  # lines that are not blank
        self.misread: list[tuple[int, str, str]] = []  # (key, element, why json_transform would misread it)

    def chunks(self, rows: int = CHUNK_ROWS, most_bytes: int = CHUNK_BYTES):
        """Tables of about `rows` lines, or fewer lines of `most_bytes` at most (but a longer line, alone): DuckDB
        scans an in-memory table on every core (a stream on one)."""
        pending, size, held = [], 0, 0
        for batch in self._batches(most_bytes):
            batch_bytes = batch.column(LINE_TEXT).nbytes
            if pending and held + batch_bytes > most_bytes:
                yield pa.Table.from_batches(pending, SCHEMA)
                pending, size, held = [], 0, 0
            pending.append(batch)
            size, held = size + batch.num_rows, held + batch_bytes
            if size >= rows:
                yield pa.Table.from_batches(pending, SCHEMA)
                pending, size, held = [], 0, 0
        if pending:
            yield pa.Table.from_batches(pending, SCHEMA)

    def _batches(self, most_bytes: int = CHUNK_BYTES):
        said = time.monotonic()  # when the read started or last said how far it had come
        for path, label in zip(self.paths, self.labels, strict=True):
            base = self.next_key - 1  # key = base + line number (lines count from 1)
            last, read = 0, 0
            _refuse_a_line_too_long(path)
            # a blank line is no record: left out here, where it costs next to nothing (a filter in
            # the DuckDB query made it parse every line twice); the numbering is the file's
            lines = pl.scan_lines(path, glob=False, name=LINE_TEXT, row_index_name="n", row_index_offset=1).filter(
                pl.col(LINE_TEXT).str.strip_chars() != ""
            )
            try:
                for frame in lines.collect_batches():
                    if frame.height == 0:
                        continue
                    last = max(last, int(frame["n"].max()))
                    self.records, read = self.records + frame.height, read + frame.height
                    if time.monotonic() - said >= PROGRESS_SECONDS:
                        self._say_progress(read, label)
                        said = time.monotonic()
                    keyed = frame.select((pl.col("n").cast(pl.Int64) + base).alias(KEY), pl.col(LINE_TEXT))
                    if self.structure is not None:
                        self._find_misread(keyed)
                    for part in _parts_of_at_most(keyed, most_bytes):
                        yield from part.to_arrow(compat_level=pl.CompatLevel.newest()).cast(SCHEMA).to_batches()
            except (pl.exceptions.ComputeError, OSError) as exc:  # not UTF-8; a gzip cut short
                raise _unreadable(path, exc) from None
            if last:
                self.segments.append(Segment(label, base + 1, base + last))
            self.next_key = base + last + 1

    def _say_progress(self, read: int, label: str) -> None:
        what = f"read {self.resource_type or 'NDJSON'} line by line: {counted(read, 'line')} so far ({label})"
        event(what, event="read_progress", resource_type=self.resource_type, lines=read, file=label)

    def _find_misread(self, keyed: pl.DataFrame) -> None:
        for key, line in zip(keyed[KEY].to_list(), keyed[LINE_TEXT].to_list(), strict=True):
            found = whole.misread(line, self.structure, self.resource_type)
            if found is not None:
                self.misread.append((key, *found))


def _parts_of_at_most(frame: pl.DataFrame, most_bytes: int):
    """``frame``'s lines in consecutive parts, each of the lines that start within one stretch of `most_bytes` of its
    text (so at most twice that, or one longer line): Polars hands over lines by count, and one batch held every long
    line of a file."""
    length = frame[LINE_TEXT].str.len_bytes().cast(pl.Int64)
    if length.sum() <= most_bytes:
        yield frame
        return
    part = ((length.cum_sum() - length) // most_bytes).alias("_part")
    yield from frame.with_columns(part).partition_by("_part", maintain_order=True, include_key=False)


def _refuse_a_line_too_long(path: Path) -> None:
    """Stop on a line longer than LONGEST_LINE, before Polars reads it: one pass of the file (a gzip one
    decompressed in pieces, never whole), only on the lines' way (DuckDB's reader takes a sound file whole)."""
    import gzip
    import zlib

    opener = gzip.open if is_gzip(path) else open
    line, run = 1, 0  # the line being read and its bytes so far
    try:
        with opener(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                # a line longer than a piece runs over a piece's end: its bytes are counted exactly here
                first = chunk.find(b"\n")
                run += len(chunk) if first < 0 else first
                if run > LONGEST_LINE:
                    raise InputFileError(
                        path,
                        f"a line longer than {LONGEST_LINE >> 20} MiB, which no resource the audit reads is "
                        "(a damaged file, or a gzip that expands without end)",
                        "Re-export or download the file again",
                        line=line,
                    )
                if first >= 0:
                    line += chunk.count(b"\n")
                    run = len(chunk) - chunk.rfind(b"\n") - 1
    except (OSError, EOFError, zlib.error):  # cut short or corrupt: the read that follows names it
        return


def _unreadable(path: Path, exc: Exception) -> InputFileError:
    """The file-level error for a file Polars could not read as lines (error path only)."""
    if "utf8" in str(exc).lower() or "utf-8" in str(exc).lower():
        line, byte = first_non_utf8(path)
        return InputFileError(path, f"byte 0x{byte:02x} is not UTF-8 text", UTF8_FIX, line=line)
    return InputFileError(
        path, f"cannot be read as lines of text ({str(exc).splitlines()[0]})", "Re-export or download the file again"
    )


def first_non_utf8(path: Path) -> tuple[int | None, int]:
    """(line, byte) of the first byte that is not UTF-8: read in pieces, decoded incrementally."""
    import codecs
    import gzip

    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return lines + exc.object.count(b"\n", 0, exc.start) + 1, exc.object[exc.start]
            lines += chunk.count(b"\n")
    return None, 0
