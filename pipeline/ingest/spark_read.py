"""Extracts read by Spark itself (``--engine spark``): CSV and Parquet, typed on Spark, landed as the
loader's typed Parquet file.

The Polars parse's job (``load._write_typed``) done by the run's Spark session: Spark reads the file
by its URI, numbers the records, types every column with ``spark_typed`` and the result comes back
to the scratch folder; from there the loader lists rejects and duplicates exactly as for the Polars
parse (``load.prepare_table``). Spark cannot give a record's physical line: it gives the record's
file (``_metadata.file_path``) and its position, made into the record number here (header = 1, the
first record 2, as the Polars parse numbers them); for a local CSV whose quoted fields hold line
breaks the loader then maps record numbers to physical lines, as it does for the Polars parse.
A workbook, a CSV with title lines above its header (``header_row``), a table read with ``code_with_description`` or
``decimal_comma`` and rows a reader already holds (FHIR) stay with the Polars parse.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from pipeline.config import Config
from pipeline.ingest import headers, spark_typed
from pipeline.ingest.contract import TableContract
from pipeline.ingest.inputs import InputFile
from pipeline.ingest.source_store import LINE
from pipeline.ingest.textfile import Source
from pipeline.wording import counted

log = logging.getLogger(__name__)

READS = ("csv", "parquet")  # the formats Spark reads here
CORRUPT = "_corrupt_record"
REPLACEMENT = "\ufffd"  # what Spark's decoder puts where a byte is not UTF-8


def typed_writer(spark):
    """The loader's typed-file writer (``load._write_typed``'s signature) on this run's Spark."""

    def write(
        f: InputFile, contract: TableContract, cfg: Config, out: Path, source: Source | None = None, rows=None, known_codes=()
    ) -> dict:
        from pipeline.ingest import load

        # title lines above the header (header_row): Spark's reader takes the first line as the header; a code with its
        # description and a decimal comma are read by the Polars parse's expressions (code_cells)
        fmt = cfg.format_of(f.table)
        polars_only = (f.header_row or 1) > 1 or fmt.code_with_description or fmt.decimal_comma
        if rows is not None or f.fmt not in READS or polars_only:
            return load._write_typed(f, contract, cfg, out, source, rows, known_codes)
        return write_typed(spark, f, contract, cfg, out, source or Source(f.path))

    return write


def write_typed(spark, f: InputFile, contract: TableContract, cfg: Config, out: Path, source: Source) -> dict:
    """Read, number and type one file on Spark; write the typed rows to ``out``. Returns the columns
    (file order, contract names) as the Polars parse's schema keys."""
    rename = headers.column_map(f, contract, cfg)
    frame, kinds = _read(spark.session, f, source, rename, cfg)
    frame, splits = _numbered(frame, f, source, kinds)
    for step in spark_typed.typed_columns(kinds, contract, cfg):
        frame = frame.selectExpr(*step)
    spark.to_parquet(frame, out, LINE)
    log.info("read %s on Spark (%s)", f.label, counted(splits, "split"))
    return dict.fromkeys(kinds)


def local_uri(path: Path) -> str:
    """A local file as Spark's readers take it: ``file://`` and the path as it is (Hadoop reads the text after the
    scheme as the path, so Path.as_uri's %20 for a space named another file), its glob characters escaped."""
    return glob_escaped("file://" + str(path.resolve()))


def glob_escaped(uri: str) -> str:
    """A path or URI for Spark's readers, its glob characters escaped: Hadoop expands [ ] { } * ? in a path to read
    ("Extract [2026-04]" matched nothing). Only for reading: a writer takes its path as it is, backslashes too."""
    return re.sub(r"([\\\[\]{}*?])", r"\\\1", uri)


def _read(session, f: InputFile, source: Source, rename: dict[str, str], cfg: Config):
    """The file as a Spark frame with its record's place (file, split, position), and each column's kind."""
    from pyspark.sql.types import DateType, StringType, StructField, StructType, TimestampNTZType, TimestampType

    uri = local_uri(source.path)
    if f.fmt == "parquet":
        frame = session.read.parquet(uri)
        full = headers.with_set_aside(rename, frame.columns)
        frame = frame.withColumnsRenamed({k: v for k, v in full.items() if k != v})
        kind = {TimestampType: "instant", TimestampNTZType: "wall", DateType: "date"}
        kinds = {fld.name: kind.get(type(fld.dataType), "text") for fld in frame.schema.fields}
    else:
        header = headers.read_header(f, cfg.format_of(f.table))[0]
        full = headers.with_set_aside(rename, header)
        names = [full.get(h, h) for h in header]
        schema = StructType([StructField(n, StringType()) for n in names] + [StructField(CORRUPT, StringType())])
        quote = source.quote_char or ""  # "" turns quoting off
        reader = session.read.options(
            header=True, sep=source.separator, quote=quote, escape=quote or "\\", multiLine=True, mode="PERMISSIVE",
            columnNameOfCorruptRecord=CORRUPT, encoding="UTF-8", enforceSchema=True,
        )  # fmt: skip
        frame = reader.schema(schema).csv(uri)
        kinds = dict.fromkeys(names, "text")
    place = ["_metadata.file_path AS _file", "_metadata.file_block_start AS _block", "monotonically_increasing_id() AS _mid"]
    extra = [spark_typed.q(CORRUPT)] if f.fmt != "parquet" else []
    # ids and the record's place fixed once: the numbering below and the typing read the same rows
    frame = frame.selectExpr(*[spark_typed.q(c) for c in kinds], *extra, *place).localCheckpoint()
    return frame, {LINE: "line", **kinds}


def _numbered(frame, f: InputFile, source: Source, kinds: dict[str, str]):
    """(the frame with ``source_line``, the number of splits read): the record number in its file (header 1, first record 2; a
    Parquet file's first row 1), from each split's first id (the ids rise within a split, and a
    split's records follow each other in the file)."""
    from pyspark.sql import functions as F

    checks = []
    if f.fmt != "parquet":
        text = [spark_typed.q(c) for c, k in kinds.items() if k == "text"]
        suspect = (
            f"{spark_typed.q(CORRUPT)} IS NOT NULL OR contains(concat_ws('', {', '.join(text)}), {spark_typed.lit(REPLACEMENT)})"
        )
        checks = [F.expr(f"count_if({suspect})").alias("_suspect")]
    splits = frame.groupBy("_file", "_block").agg(F.min("_mid").alias("_first"), F.count("*").alias("_n"), *checks).collect()
    if f.fmt != "parquet" and any(r["_suspect"] for r in splits):
        _stop_on_unreadable(f, source)
    first_key = 1 if f.fmt == "parquet" else 2
    whens, before = [], 0
    for r in sorted(splits, key=lambda r: (r["_file"], r["_block"])):
        base = first_key + before - r["_first"]
        whens.append(f"WHEN _file = {spark_typed.lit(r['_file'])} AND _block = {r['_block']} THEN _mid + {base}")
        before += r["_n"]
    line = f"CASE {' '.join(whens)} END" if whens else "CAST(NULL AS BIGINT)"
    columns = [spark_typed.q(c) for c in kinds if c != LINE]
    return frame.selectExpr(f"CAST({line} AS BIGINT) AS {LINE}", *columns), len(splits)


def _stop_on_unreadable(f: InputFile, source: Source) -> None:
    """A record with more fields than the header, or a byte that is not UTF-8: the Polars parse's
    error, found the same way (a record with fewer fields reads its missing fields as empty, as there)."""
    from pipeline.ingest import load

    error = load.unreadable_csv(f, source)
    if error.line is not None:
        raise error
