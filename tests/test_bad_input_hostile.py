"""Hostile input, part 2, through the real CLI: a text field no one can read, a FHIR resource that says two
things, and the attacks of a fresh hostile pass. Each test names the fault it pins and fails without its fix.
"""

from __future__ import annotations

import json
import random
import shutil
import string
import tomllib
import zipfile
from pathlib import Path

import polars as pl
import pytest
from conftest import run_cli
from fhir_export import export_extract
from test_bad_inputs import _rejects, _run_json, _write_workbook
from test_fhir_manifest import _write_manifest

from pipeline.ingest.contract import LONGEST_TEXT

# a text no name is: 2 MB of letters that do not compress (so an output that holds it is over a megabyte,
# even compressed Parquet)
HUGE = "".join(random.Random(26).choices(string.ascii_letters, k=2_000_000))


def _order_rows(d: Path) -> list[list[str]]:
    return [line.split(",") for line in (d / "imaging_orders.csv").read_text().splitlines()]


def _write_orders(d: Path, fmt: str, rows: list[list[str]]) -> None:
    """The orders as `fmt`: the CSV rewritten, or replaced by a Parquet file or a workbook."""
    frame = pl.DataFrame(rows[1:], schema=rows[0], orient="row")
    (d / "imaging_orders.csv").unlink()
    if fmt == "csv":
        frame.write_csv(d / "imaging_orders.csv")
    elif fmt == "parquet":
        frame.write_parquet(d / "imaging_orders.parquet")
    else:
        _write_workbook(d / "imaging_orders.xlsx", {"imaging_orders": rows})


def _outputs_over_a_megabyte(out: Path) -> list[str]:
    return [str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.stat().st_size > 1_000_000]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx", "fhir"])
def test_a_huge_department_is_a_reject_in_every_format_and_reaches_no_output(tmp_path, small_input, fmt):
    """A 50 MB ordering_department on an audited order grew the report stage to 5.5 GB of memory and stopped it
    with a traceback (an Arrow string buffer over 2 GB); smaller, it was printed whole on every page that names
    the department. Now the row is set aside at the parse (column, reason, no value), counted, and no output
    holds the text; a name at the limit stays, cut on the pages (names.printed). The order O4 is the premature
    one: audited, in the flagged list."""
    rows = _order_rows(small_input)
    column = rows[0].index("ordering_department")
    # a name exactly at the limit stays, counted in characters (2 bytes each), not in bytes
    rows[1][column] = "é" * LONGEST_TEXT
    if fmt == "fhir":  # O4's department, Emergency, is its encounter's Location: that Location's name
        _write_orders(small_input, "csv", rows)
        export = tmp_path / "export"
        export_extract(small_input, export)
        locations = export / "Location.000.ndjson"
        resources = [json.loads(line) for line in locations.read_text(encoding="utf-8").splitlines()]
        for resource in resources:
            resource["name"] = HUGE if resource["name"] == "Emergency" else resource["name"]
        locations.write_text("".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8")
        source = export
    else:
        rows[4][column] = HUGE
        _write_orders(small_input, fmt, rows)
        source = small_input
    out = tmp_path / "out"
    r = run_cli("run", "--input", source, "--out", out, "--no-validate")
    assert r.returncode == 0, r.stderr
    rejects = _rejects(out).filter(pl.col("table_name") == "imaging_orders")
    assert rejects.height == 1, rejects
    reject = rejects.row(0, named=True)
    assert reject["column_name"] == "ordering_department"
    assert reject["reason"].startswith(f"longer than {LONGEST_TEXT:,} characters"), reject
    assert reject["action"] == "row_rejected" and reject["value"] is None
    if fmt == "fhir":
        assert "ServiceRequest" in reject["source_file"], reject
    else:
        # the CSV's line and the Excel row count the header; a Parquet file's rows count from 1
        assert reject["source_line"] == ("4" if fmt == "parquet" else "5"), reject
    loaded = {i["table"]: (i["rows_read"], i["rows_loaded"]) for i in _run_json(out)["inputs"]}
    assert loaded["imaging_orders"] == (4, 3), loaded
    assert _outputs_over_a_megabyte(out) == []
    assert HUGE[:1000] not in r.stderr
    audited = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
    assert "O4" not in audited["order_id"].to_list()
    # the name at the limit: whole in the data outputs, its first 80 characters and its length on the pages
    assert "é" * LONGEST_TEXT in audited["ordering_department"].to_list()
    report = (out / "csf_leak" / "report.html").read_text(encoding="utf-8")
    assert "é" * 80 + "… (1,000 characters; whole in the workbook)" in report and "é" * 81 not in report


def test_a_huge_value_in_a_checked_column_is_not_shown_either(tmp_path, small_input):
    """A 2 MB ordered_at was listed whole in rejects.csv as the unparseable value, and a 2 MB status word whole
    in the log, run.json and the report as a value no map knows. Both are now too long, and shown nowhere."""
    rows = _order_rows(small_input)
    rows[2][rows[0].index("ordered_at")] = HUGE
    rows[3][rows[0].index("status")] = HUGE
    _write_orders(small_input, "csv", rows)
    out = tmp_path / "out"
    r = run_cli("run", "--input", small_input, "--out", out, "--no-validate")
    assert r.returncode == 0, r.stderr
    rejects = _rejects(out).filter(pl.col("table_name") == "imaging_orders").sort("source_line")
    assert rejects.select("source_line", "column_name").rows() == [("3", "ordered_at"), ("4", "status")], rejects
    assert rejects["value"].is_null().all()
    assert _outputs_over_a_megabyte(out) == []
    assert HUGE[:1000] not in r.stderr
    assert json.loads((out / "run.json").read_text()).get("unknown_values") in (None, [], {})


def test_a_resource_that_gives_an_element_twice_is_a_reject_naming_it(tmp_path, small_input):
    """A ServiceRequest with two authoredOn (and one whose coding gives its code twice) loaded the first value
    silently: DuckDB's reader stops at the line, the lines' way read it with json_transform, which keeps the
    first. A hospital's exporter writing two values for one element is data the audit cannot trust: the
    resource is a reject naming the file, the line and the element, and its order is not audited."""
    export = tmp_path / "export"
    export_extract(small_input, export)
    requests = export / "ServiceRequest.000.ndjson"
    lines = requests.read_text(encoding="utf-8").splitlines()
    assert '"id":"O4"' in lines[3] and '"id":"O2"' in lines[1]
    lines[3] = lines[3].replace('"authoredOn":', '"authoredOn":"2025-06-20T09:00:00-04:00","authoredOn":', 1)
    lines[1] = lines[1].replace('"code":"72157"', '"code":"72157","code":"72148"', 1)
    requests.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    r = run_cli("run", "--input", export, "--out", out, "--no-validate")
    assert r.returncode == 0, r.stderr
    rejects = _rejects(out).filter(pl.col("table_name") == "imaging_orders").sort("source_line")
    assert rejects.select("source_line", "reason").rows() == [
        ("2", "element ServiceRequest.code.coding.code given twice in one resource (two values for one element; fix the export)"),
        ("4", "element ServiceRequest.authoredOn given twice in one resource (two values for one element; fix the export)"),
    ], rejects
    assert rejects["source_file"].str.ends_with("ServiceRequest.000.ndjson").all()
    loaded = {i["table"]: (i["rows_read"], i["rows_loaded"]) for i in _run_json(out)["inputs"]}
    assert loaded["imaging_orders"] == (4, 2), loaded
    audited = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
    assert not {"O2", "O4"} & set(audited["order_id"].to_list())


def test_times_in_year_1_or_9999_are_rejects_not_a_traceback(tmp_path, small_input):
    """A procedure at 9999-12-31 23:59 local (year 10000 in UTC, which no Python datetime holds) stopped the run
    with a traceback after the warehouse had loaded it; one in year 1 made the data span 2,000 years of months. Both
    are rejects naming the column, and no page names those years."""
    rows = _order_rows(small_input)
    rows[3][rows[0].index("ordered_at")] = "0001-01-01 00:00:00"
    rows[2][rows[0].index("ordered_at")] = "9999-12-31 23:59:59"
    _write_orders(small_input, "csv", rows)
    dx = (small_input / "diagnoses.csv").read_text() + "MRN-1,G97.1,9999-12-31 23:59:59\n"
    (small_input / "diagnoses.csv").write_text(dx)
    procedures = (small_input / "procedures.csv").read_text() + "PR3,MRN-3,9999-12-31 23:59:59,62323,Pain clinic,1970-01-01\n"
    (small_input / "procedures.csv").write_text(procedures)
    out = tmp_path / "out"
    r = run_cli("run", "--input", small_input, "--out", out, "--no-validate")
    assert r.returncode == 0, r.stderr
    rejects = _rejects(out).sort("table_name", "source_line")
    assert rejects.select("table_name", "source_line", "column_name").rows() == [
        ("diagnoses", "3", "recorded_at"),
        ("imaging_orders", "3", "ordered_at"),
        ("imaging_orders", "4", "ordered_at"),
        ("procedures", "4", "performed_at"),
    ], rejects
    assert rejects["reason"].str.starts_with("outside the years 1900 to 2199").all()
    pages = [(out / "index.html").read_text(encoding="utf-8"), (out / "csf_leak" / "report.html").read_text(encoding="utf-8")]
    assert not any("0001-" in page or "10000-" in page for page in pages)


@pytest.mark.parametrize(
    ("setting", "exit_code"),
    [("site_timezone", 1), ("[formats.imaging_orders]\ndelimiter", 1), ("[columns.imaging_orders]\norder_id", 2)],
    ids=["site_timezone", "delimiter", "column_map"],
)
def test_a_10_mb_setting_is_one_short_line_not_a_traceback_or_10_mb_of_it(tmp_path, small_input, setting, exit_code):
    """A 10 MB site_timezone stopped the run with a traceback (the zone name longer than a file name may be); a
    10 MB delimiter or column name came back whole in the error: one line of 10 MB, on a terminal or in a log."""
    config = tmp_path / "site.toml"
    config.write_text(f'{setting} = "{"A" * 10_000_000}"\n')
    out = tmp_path / "out"
    r = run_cli("run", "--input", small_input, "--out", out, "--config", config, "--no-validate")
    assert r.returncode == exit_code, r.stderr[:2000]
    assert "Traceback" not in r.stderr and len(r.stderr) < 2000, r.stderr[:2000]
    assert r.stderr.strip().splitlines()[-1].startswith("order-audit: error: ")
    assert "(10,000,002 characters)" in r.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("column", "nested", "kind"),
    [
        ("ordering_department", pl.struct(pl.col("ordering_department").alias("name"), pl.lit(1).alias("n")), "Struct"),
        ("order_code", pl.concat_list("order_code", "order_code"), "List"),
    ],
    ids=["struct", "list"],
)
def test_a_nested_parquet_column_stops_the_run_naming_it(tmp_path, small_input, column, nested, kind):
    """A struct where the contract reads text was loaded as its text (department `{"Neurology",1}`, on every
    page); a list stopped the run with 'Parquet file could not be read', naming no column."""
    orders = pl.read_csv(small_input / "imaging_orders.csv", infer_schema=False).with_columns(nested.alias(column))
    (small_input / "imaging_orders.csv").unlink()
    orders.write_parquet(small_input / "imaging_orders.parquet")
    out = tmp_path / "out"
    r = run_cli("run", "--input", small_input, "--out", out, "--no-validate")
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert f"imaging_orders.parquet, column '{column}': holds {kind} values (nested)" in line, line
    assert not out.exists()


def _recorded_bytes(path: Path, run: dict) -> dict[str, bytes]:
    """A published file's bytes (a workbook's: each part's) with what records the run (its id, its start) cut out."""
    parts = {}
    if path.suffix == ".xlsx":
        with zipfile.ZipFile(path) as book:
            parts = {name: book.read(name) for name in book.namelist()}
    else:
        parts = {"": path.read_bytes()}
    from pipeline.report.templates import in_utc  # noqa: PLC0415 - the start as the pages print it

    for stamp in (run["run_id"], run["started_at"], in_utc(run["started_at"])):
        parts = {name: data.replace(stamp.encode(), b"RUN") for name, data in parts.items()}
    return parts


@pytest.mark.parametrize("kind", ["csv", "fhir"])
def test_the_same_input_in_another_folder_gives_the_same_bytes_and_names_no_folder(tmp_path, small_input, kind):
    """rejects.csv, rejects_summary.csv, load_ledger.csv, run.json and the report's inputs named every input by its
    absolute path: a folder named for a patient reached every audit's outputs, and the same extract copied to
    another folder gave other bytes. Now a file is named relative to --input; only the run's id and start differ."""
    rows = _order_rows(small_input)
    rows[2][rows[0].index("ordered_at")] = "garbage"  # a reject, so rejects.csv names its file
    _write_orders(small_input, "csv", rows)
    shutil.copy(Path(__file__).parents[1] / "examples" / "local_code_map.csv", small_input)
    folders = [tmp_path / "Jane Doe MRN 4711" / "extract", tmp_path / "b" / "c"]
    published, runs = [], []
    for i, folder in enumerate(folders):
        if kind == "csv":
            shutil.copytree(small_input, folder)
        else:
            export_extract(small_input, folder)
            _write_manifest(folder)
        out = tmp_path / f"out{i}"
        r = run_cli("run", "--input", folder, "--out", out, "--warehouse", tmp_path / f"wh{i}.duckdb", "--no-validate")
        assert r.returncode == 0, r.stderr
        run = _run_json(out)
        files = {str(p.relative_to(out)): p for p in sorted(out.rglob("*")) if p.is_file() and p.name != "run.json"}
        published.append({name: _recorded_bytes(p, run) for name, p in files.items()})
        runs.append(run)
        for name, parts in published[-1].items():
            for data in parts.values():
                assert str(tmp_path).encode() not in data, name
    assert published[0].keys() == published[1].keys()
    assert {"csf_leak/rejects.csv", "csf_leak/rejects_summary.csv", "csf_leak/load_ledger.csv"} <= published[0].keys()
    assert [name for name in published[0] if published[0][name] != published[1][name]] == []
    rejects = _rejects(tmp_path / "out0").filter(pl.col("table_name") == "imaging_orders")
    named = "ServiceRequest.000.ndjson" if kind == "fhir" else "imaging_orders.csv"
    assert rejects["source_file"].to_list() == [named], rejects
    # run.json records the run (its id, times, the warehouse it used) and names no input folder either
    assert [i["path"] for i in runs[0]["inputs"]] == [i["path"] for i in runs[1]["inputs"]]
    assert not any(str(tmp_path) in json.dumps({k: r[k] for k in r if k != "config"}) for r in runs)
    assert [f["path"] for f in runs[0]["reference_files"] if f["name"] == "local_code_map"] == ["local_code_map.csv"]
    if kind == "fhir":
        assert runs[0]["export_manifest"]["path"] == "manifest.json"


def test_a_value_with_a_line_break_or_a_bidi_override_keeps_each_log_line_one_line(tmp_path, small_input):
    """An unknown status word holding a line break cut the unknown-values line in two, and a right-to-left override
    reversed the rest of it on a terminal; a DEL made the config line it suggests one TOML refuses. An order id so
    made did the same to a data-quality warning's examples. Each value is now written as its escapes."""
    rows = _order_rows(small_input)
    rows += [[f"O{i}", "MRN-1", "2025-06-06 11:00:00", "72156", "Neurology", "G97.1", "completed"] for i in range(8, 14)]
    rows += [
        ["O5", "MRN-1", "2025-06-06 11:05:00", "72156", "Neurology", "G97.1", "On\nHold\u202e=1"],
        ["O6", "MRN-1", "2025-06-06 11:05:00", "72156", "Neurology", "G97.1", "Pend\x7fing"],
        ["O7\n\u202eX", "MRN-1", "2025-06-06 11:05:00", "LOCAL1", "Neurology", "G97.1", "completed"],
    ]
    _write_orders(small_input, "csv", rows)
    out = tmp_path / "out"
    r = run_cli("run", "--input", small_input, "--out", out, "--warehouse", tmp_path / "wh.duckdb")
    assert r.returncode == 0, r.stderr
    assert "\u202e" not in r.stderr and "\x7f" not in r.stderr
    lines = r.stderr.splitlines()
    assert all(line.startswith("order-audit: ") for line in lines), r.stderr
    [unknown] = [line for line in lines if "no map knows" in line]
    assert unknown == (
        "order-audit: imaging_orders.csv: imaging_orders.status: no map knows 'On\\nHold\\u202e=1' (1 row), "
        "'Pend\\x7fing' (1 row); its rows are set aside (an unknown status could hide a cancellation). To map them, "
        'add to the config: [values.imaging_orders.status] / "On\\nHold\\u202e=1" = "?"   # one of ordered, scheduled, '
        'completed, cancelled / "Pend\\u007fing" = "?"   # one of ordered, scheduled, completed, cancelled'
    )
    [found] = _run_json(out)["unknown_values"]
    assert [v["value"] for v in found["values"]] == ["On\nHold\u202e=1", "Pend\x7fing"]
    pasted = tomllib.loads("\n".join(line.replace('"?"', '"cancelled"') for line in found["config_lines"]))
    assert pasted == {"values": {"imaging_orders": {"status": {"On\nHold\u202e=1": "cancelled", "Pend\x7fing": "cancelled"}}}}
    [warning] = [line for line in lines if "orders.order_code.format" in line]
    assert "(e.g. O7\\n\\u202eX). The check: order_code is in CPT form" in warning, warning
