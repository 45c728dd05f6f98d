"""An export cut into many small files costs what its bytes cost, and reads as the same export in one file a type.

`$export` servers cut their output by resource count (every 1,000 or 10,000 resources), so a large site's
export can come as thousands of files a type. A reader per file made the cost the file count (the 300-patient
export in 1,000 files a type: 323 s against 17 s); each type's files are now read by one DuckDB reader
(`whole.source`, `extract`), and a ServiceRequest export of many files is extracted that way before it is
streamed (more than `whole.OWN_READER` files). Here the test deck is written one file a type and one resource a file
(hundreds of files, some of them gzip): the CLI must give the same verdicts and data outputs, a bad line in one
of the many files must be a reject naming that file and line while the other files are still read whole, and
the reading must stay one reader (one part) however many files there are.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import polars as pl
import pytest
from conftest import run_cli, write_small_input
from fhir_export import export_extract
from test_fhir_input import _lines, _sr
from test_fhir_whole import _both_ways, _extracted, _patients

from benchmarks.engine_compare import data_outputs
from pipeline.config import load_config
from pipeline.deck import SITE_TIMEZONE, deck_files, write_deck_input
from pipeline.ingest.fhir import export, extract, prepare, whole
from pipeline.wording import counted

# these name each file (and hash the export): compared apart
NAMING_FILES = ("rejects.csv", "rejects_summary.csv", "load_ledger.csv")


def _gzip_every(folder: Path, resource_type: str, step: int) -> None:
    """Every step-th file of the type gzip-compressed and named so (.ndjson.gz), as servers may serve them."""
    for path in export.read_export(folder).of(resource_type)[step - 1 :: step]:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()


def _run(folder: Path, out: Path) -> str:
    # without the gate: it checks the parsed tables, the same however the export is cut (test_fhir_deck gates the deck's
    # export); a run with it took twice as long
    result = run_cli("run", "--input", folder, "--out", out, "--site-timezone", SITE_TIMEZONE, "--no-validate")
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stderr


@pytest.fixture(scope="module")
def deck(tmp_path_factory) -> Path:
    """The deck as an export in one file a type (one/) and in one resource a file (many/), every 7th gzip."""
    base = tmp_path_factory.mktemp("many_files")
    write_deck_input(base / "csv", [f for f in deck_files() if f.audit == "csf_leak"])  # the deck FHIR carries whole
    export_extract(base / "csv", base / "one", lines_per_file=1_000_000, variety=False)
    export_extract(base / "csv", base / "many", lines_per_file=1, variety=False)
    for resource_type in export.RESOURCE_TYPES:
        _gzip_every(base / "many", resource_type, 7)
    many = export.read_export(base / "many")
    assert len(many.of("ServiceRequest")) > 100 and len(many.all_files()) > 300
    return base


@pytest.fixture(scope="module")
def exports(deck) -> dict:
    runs = {name: deck / f"out_{name}" for name in ("one", "many")}
    logs = {name: _run(deck / name, out) for name, out in runs.items()}
    return {"runs": runs, "logs": logs, "many": deck / "many"}


def _rejects(out: Path) -> pl.DataFrame:
    return pl.read_csv(out / "csf_leak" / "rejects.csv", infer_schema=False)


def test_many_small_files_give_the_one_file_exports_outputs(exports):
    one, many = (data_outputs(exports["runs"][name]) for name in ("one", "many"))
    assert one.keys() == many.keys() and len(one) > 10
    differing = sorted(name for name in one if one[name] != many[name] and not name.endswith(NAMING_FILES))
    assert differing == []
    # the rejects too, but for the file each one names (the same resource, at line 1 of its own file)
    assert (
        _rejects(exports["runs"]["one"])
        .drop("source_file", "source_line")
        .equals(_rejects(exports["runs"]["many"]).drop("source_file", "source_line"))
    )
    files = len(export.read_export(exports["many"]).of("ServiceRequest"))
    assert f"in {counted(files, 'file')}, {files:,} read whole" in exports["logs"]["many"]


def test_a_bad_line_in_one_of_many_files_is_a_reject_naming_that_file_and_line(exports, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(exports["many"], folder)
    bulk = export.read_export(folder)
    requests, encounters = bulk.of("ServiceRequest"), bulk.of("Encounter")
    bad_order, bad_encounter = requests[len(requests) // 2], encounters[len(encounters) // 3]
    assert not bad_order.name.endswith(".gz") and not bad_encounter.name.endswith(".gz")
    with bad_order.open("a", encoding="utf-8") as fh:
        fh.write(_lines("{broken", _sr("S-NO-SUBJECT", patient=None)))  # lines 2 and 3
    with bad_encounter.open("a", encoding="utf-8") as fh:
        fh.write("not json either\n")  # line 2
    log = _run(folder, tmp_path / "out")
    rejects = _rejects(tmp_path / "out")

    def at(path: Path, line: int) -> list[str]:
        found = rejects.filter((pl.col("source_file") == path.name) & (pl.col("source_line") == str(line)))
        return found["reason"].to_list()

    assert at(bad_order, 2) == ["line is not JSON"]
    assert at(bad_order, 3) == ["required element ServiceRequest.subject missing"]
    assert at(bad_encounter, 2) == ["line is not JSON"]
    # only the bad files went the lines' way: every other file of the many was still read whole
    assert f"in {counted(len(requests), 'file')}, {len(requests) - 1:,} read whole" in log
    assert f"in {counted(len(encounters), 'file')}, {len(encounters) - 1:,} read whole" in log
    # and nothing else changed: the verdicts are those of the export without the bad lines
    audited = "csf_leak/audited_orders.csv"
    assert (tmp_path / "out" / audited).read_bytes() == (exports["runs"]["many"] / audited).read_bytes()


def test_many_files_are_read_by_one_reader_into_one_part(deck, tmp_path):
    """The cost of a reader per file (its planning, its part, a UNION ALL branch each) must not come back."""
    folder = deck / "many"
    for resource_type in ("Encounter", "ServiceRequest"):
        paths = export.read_export(folder).of(resource_type)
        assert any(p.name.endswith(".gz") for p in paths) and len(paths) > 50
        work = tmp_path / resource_type
        work.mkdir()
        con = prepare.connect(work)
        try:
            extract.set_variables(con, load_config(site_timezone=SITE_TIMEZONE).fhir, ())
            done = extract.extract(con, resource_type, paths, [str(p) for p in paths], 1, work / "x.parquet")
        finally:
            con.close()
        assert done.whole_files == len(paths) and done.relation.count("read_parquet(") == 1
        assert len(list(work.glob("x.*.parquet"))) == 1


def test_the_files_a_reader_stops_at_go_the_lines_way_alone(tmp_path):
    """Forty files, one reader: a line that is not JSON (the reader stops: the list is halved to find the file), a
    blank line (its rows are not its lines) and a gzip named .ndjson (a reader told 'gzip') among them. The rows,
    keys and segments are those of every file read line by line, and only the two bad files are not read whole."""
    folder = tmp_path / "export"
    folder.mkdir()
    _patients(folder)
    paths = []
    for n in range(40):
        path = folder / f"ServiceRequest.{n:03d}.ndjson"
        text = _lines(_sr(f"S{n}-1"), _sr(f"S{n}-2"))
        if n == 13:
            text += "{broken\n" + _lines(_sr(f"S{n}-4"))
        if n == 27:
            text += "\n" + _lines(_sr(f"S{n}-4"))
        path.write_bytes(gzip.compress(text.encode()) if n == 31 else text.encode())
        paths.append(path)
    assert _both_ways(folder, "ServiceRequest", paths, tmp_path) == 38
    rows, segments, records, _ = _extracted(folder, "ServiceRequest", paths, True, tmp_path / "again")
    assert records == 40 * 2 + 3 and len(segments) == 40  # the broken line is a record (a reject), the blank one not
    # the .gz-named files and the plain ones share a reader (DuckDB tells them by name), the misnamed gzip has its own
    assert whole.source("SELECT /*key*/ FROM read_json(/*file*/, compression=/*compression*/)", paths).count("read_json(") == 3
    lines = {r[3]: r[0] for r in rows}  # order id -> key: the key counts every line, the blank one too
    assert lines["S13-4"] - lines["S13-1"] == 3 and lines["S27-4"] - lines["S27-1"] == 3


def test_two_thousand_files_each_reject_names_its_own_file_and_line(tmp_path):
    """An export's ServiceRequests in 2,000 one-line files (more than one reader's `whole.READER_FILES`), bad lines
    in the first, a middle and the last file: each reject names its own file and line, the duplicate's reason the
    file and line its id was first seen at, and the other files are still read whole."""
    folder = tmp_path / "export"
    export_extract(write_small_input(tmp_path / "csv"), folder, lines_per_file=1000, variety=False)
    for path in export.read_export(folder).of("ServiceRequest"):
        path.unlink()
    extra = {
        0: "{broken\n",
        1000: _lines(_sr("S-NO-SUBJECT", patient=None)),
        1999: "not json\n" + _lines(_sr("S0")),  # lines 2 and 3: S0 is the first file's line 1
    }
    for n in range(2000):
        (folder / f"ServiceRequest.{n:04d}.ndjson").write_text(_lines(_sr(f"S{n}")) + extra.get(n, ""), encoding="utf-8")
    out = tmp_path / "out"
    log = _run(folder, out)
    rejects = (out / "csf_leak" / "rejects.csv").read_text(encoding="utf-8")
    assert rejects == (
        "table_name,source_file,source_line,column_name,value,reason,action\n"
        "imaging_orders,ServiceRequest.0000.ndjson,2,,,line is not JSON,row_rejected\n"
        "imaging_orders,ServiceRequest.1000.ndjson,2,ServiceRequest.subject,,"
        "required element ServiceRequest.subject missing,row_rejected\n"
        "imaging_orders,ServiceRequest.1999.ndjson,2,,,line is not JSON,row_rejected\n"
        "imaging_orders,ServiceRequest.1999.ndjson,3,order_id,S0,"
        "duplicate order_id: first seen at ServiceRequest.0000.ndjson line 1,row_rejected\n"
    )
    ledger = pl.read_csv(out / "csf_leak" / "load_ledger.csv").filter(pl.col("table_name") == "imaging_orders")
    assert ledger.select("rows_read", "rows_loaded", "rows_rejected").rows() == [(2004, 2000, 4)]
    # the two files with a line that is not JSON went the lines' way; the 1,998 others were read whole
    assert "read ServiceRequest: 2,004 resources in 2,000 files, 1,998 read whole" in log
