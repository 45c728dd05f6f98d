"""A hospital's CSV extract in the shape its reporting tool writes it, read once the config says so: title lines
above the header (header_row), code cells with their description (code_with_description) and decimal commas
(decimal_comma). `inspect` finds each and writes the line; each is off by default, so an extract the config says
nothing of reads as before."""

from __future__ import annotations

import polars as pl
import pytest
from conftest import ORDER_HEADER, PROC_HEADER, ROOT, inspect_writing_config, run_cli, write_csv

from pipeline import warehouse
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.ingest import load

TITLE = ["Imaging orders report", "Run 2026-05-01", ""]
ORDERS = [
    ["O1", "MRN-1", "2025-06-06 10:00:00", "72156", "Neurology", "G97.1", "completed"],
    ["O2", "", "2025-06-06 10:05:00", "72157", "Neurology", "G97.1", "completed"],  # no patient: rejected
    ["O3", "MRN-1", "2025-06-06 10:10:00", "72158", "Neuro\nlogy", "G97.1", "completed"],  # a quoted line break
    ["O4", "MRN-2", "not a time", "72148", "Emergency", "", "completed"],  # rejected: its time
]


def _write_titled(path, header, rows, title=TITLE, encoding="utf-8", newline="\n"):
    """A CSV with title lines above its header, as a report writer exports it."""
    import csv
    import io

    body = io.StringIO()
    csv.writer(body, lineterminator=newline).writerows([header, *rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(title) + newline + body.getvalue()).encode(encoding))
    return path


def _config(tmp_path, text: str):
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path), path


def _load(input_dir, cfg, tmp_path):
    con = warehouse.connect(tmp_path / "wh.duckdb")
    loads = load.load_inputs(con, load.find_inputs(input_dir, cfg), cfg)
    return con, {ld.table: ld for ld in loads}


def _rejects(con, table):
    return con.execute(
        "SELECT source_line, column_name, value, reason, action FROM load_rejects WHERE table_name = ? "
        "ORDER BY source_line, column_name",
        [table],
    ).fetchall()


# ---------------------------------------------------------------------------------------------- header_row


@pytest.mark.parametrize(("encoding", "newline"), [("utf-8", "\n"), ("cp1252", "\r\n")])
def test_a_csv_read_from_its_header_row_names_the_files_own_lines(small_input, tmp_path, encoding, newline):
    """Three title lines (one blank) above the header: the header is line 4, and every reject names the line a person
    finds in an editor, a quoted line break before it counted, in UTF-8 and in a Windows-1252 copy alike."""
    _write_titled(small_input / "imaging_orders.csv", ORDER_HEADER, ORDERS, encoding=encoding, newline=newline)
    enc = "" if encoding == "utf-8" else f'encoding = "{encoding}"\n'
    cfg, _ = _config(tmp_path, f"[formats.imaging_orders]\nheader_row = 4\n{enc}")
    con, loads = _load(small_input, cfg, tmp_path)
    rejects = [(line, column) for line, column, *_ in _rejects(con, "imaging_orders")]
    assert rejects == [(6, "patient_id"), (9, "ordered_at")]  # O2 on line 6; O4 after O3's two lines
    assert loads["imaging_orders"].rows_read == 4
    got = con.execute("SELECT order_id, ordering_department FROM src_imaging_orders ORDER BY 1").fetchall()
    assert got == [("O1", "Neurology"), ("O3", "Neuro\nlogy")]


def test_header_row_1_reads_as_the_default(small_input, tmp_path):
    """header_row = 1 (the boundary) is the file without title lines: the same rows and lines as no setting."""
    write_csv(small_input / "imaging_orders.csv", ORDER_HEADER, ORDERS)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    plain = _load(small_input, load_config(None), tmp_path / "a")
    cfg, _ = _config(tmp_path, "[formats.imaging_orders]\nheader_row = 1\n")
    set_row = _load(small_input, cfg, tmp_path / "b")
    query = "SELECT order_id, ordered_at, ordering_department FROM src_imaging_orders ORDER BY 1"
    assert plain[0].execute(query).fetchall() == set_row[0].execute(query).fetchall()
    assert _rejects(plain[0], "imaging_orders") == _rejects(set_row[0], "imaging_orders")
    assert [line for line, *_ in _rejects(plain[0], "imaging_orders")] == [3, 6]


def test_a_title_line_that_looks_like_a_header_is_skipped_whole(small_input, tmp_path):
    """A title line split by the delimiter into more fields than the header, holding a contract column's name, and
    one whose quote never closes: header_row skips them as lines (no CSV read of them), and inspect still finds the
    header below them and writes header_row and the delimiter from the header on."""
    title = ['"Imaging orders, by department",status,final,site,Main,all,of,them', '"Run 2026-05-01', ""]
    _write_titled(small_input / "imaging_orders.csv", ORDER_HEADER, ORDERS[:1], title=title)
    config, lines = inspect_writing_config(small_input, tmp_path)
    at = lines.index("imaging_orders: imaging_orders.csv (found by name), 1 rows")
    assert lines[at + 1] == "  header     line 4, below a title (header_row = 4)"
    assert "  columns    order_id <- order_id (same name)" in lines
    section = config.read_text(encoding="utf-8").split("[formats.imaging_orders]\n")[1].split("\n\n")[0]
    assert section == "header_row = 4   # the lines above the header hold a title"
    r = run_cli("validate", "--input", small_input, "--config", config, "--json")
    assert r.returncode == 0, r.stderr


def test_inspect_leaves_a_file_without_title_lines_as_it_is(small_input, tmp_path):
    r = run_cli("inspect", "--input", small_input, "--json")
    assert r.returncode == 0, r.stderr
    import json

    assert json.loads(r.stdout)["imaging_orders"]["header_row"] is None


@pytest.mark.parametrize(
    ("setting", "title", "expected"),
    [
        (  # a header_row past the file's end
            "header_row = 40",
            TITLE,
            "imaging_orders.csv: has no line 40 (header_row under [formats.imaging_orders]). Fix header_row in the config",
        ),
        (  # the header's line read, its required column missing: the header's own line named
            "header_row = 3",
            TITLE,
            "imaging_orders.csv, line 3: required column(s) missing: order_id, patient_id, ordered_at, order_code,"
            " ordering_department.",
        ),
        (  # a row with more fields than the header: its own line named
            "header_row = 4",
            TITLE,
            "imaging_orders.csv, line 6: cannot be read as CSV: 8 fields where the header has 7.",
        ),
    ],
)
def test_a_bad_header_row_is_one_line_naming_the_file_and_its_line(small_input, tmp_path, setting, title, expected):
    rows = ORDERS[:1] + ([[*ORDERS[0][:6], "completed", "extra"]] if "= 4" in setting else [])
    _write_titled(small_input / "imaging_orders.csv", ORDER_HEADER, rows, title=title)
    _, config = _config(tmp_path, f"[formats.imaging_orders]\n{setting}\n")
    r = run_cli("validate", "--input", small_input, "--config", config)
    assert r.returncode in (2, 3), r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith("order-audit: error: " + expected), last
    assert "Traceback" not in r.stderr


def test_header_row_is_refused_for_a_parquet_file(small_input, tmp_path):
    pl.read_csv(small_input / "imaging_orders.csv", infer_schema=False).write_parquet(small_input / "imaging_orders.parquet")
    (small_input / "imaging_orders.csv").unlink()
    _, config = _config(tmp_path, "[formats.imaging_orders]\nheader_row = 2\n")
    r = run_cli("validate", "--input", small_input, "--config", config)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == (
        "order-audit: error: imaging_orders.parquet: header_row is set under [formats.imaging_orders], which a Parquet "
        "file does not take (it has no title lines). Remove header_row from the config"
    )


# ----------------------------------------------------------------------------------- code_with_description

DESCRIBED = [
    ("O1", "72148 - MRI LUMBAR SPINE WO CONTRAST", "72148", "MRI LUMBAR SPINE WO CONTRAST"),
    ("O2", "72156 MRI C-Spine", "72156", "MRI C-Spine"),
    ("O3", "CPT 72157", "72157", None),
    ("O4", "72158", "72158", None),
    ("O5", "cpt: 24558-9: Lumbar spine XR", "24558-9", "Lumbar spine XR"),
    ("O6", "MRI LUMBAR SPINE", None, None),  # a description alone: no code
]


def _described_orders(folder, with_name: bool):
    header = ORDER_HEADER + (["order_name"] if with_name else [])
    rows = [
        [f"O{i}", "MRN-1", "2025-06-06 10:00:00", cell, "Neurology", "", "completed"]
        + (["Site name" if i == 4 else ""] if with_name else [])
        for i, (_, cell, *_) in enumerate(DESCRIBED, start=1)
    ]
    write_csv(folder / "imaging_orders.csv", header, rows)


@pytest.mark.parametrize("with_name", [False, True])
def test_code_with_description_reads_the_leading_code_and_keeps_the_description(small_input, tmp_path, with_name):
    _described_orders(small_input, with_name)
    cfg, _ = _config(tmp_path, "[formats.imaging_orders]\ncode_with_description = true\n")
    con, loads = _load(small_input, cfg, tmp_path)
    got = con.execute("SELECT order_id, order_code, order_name FROM src_imaging_orders ORDER BY 1").fetchall()
    names = {"O4": "Site name"} if with_name else {}  # the extract's own name stays
    assert got == [(o, code, names.get(o, name)) for o, _, code, name in DESCRIBED if code]
    (line, column, value, reason, action), *rest = _rejects(con, "imaging_orders")
    assert rest == []
    assert (line, column, value, action) == (7, "order_code", "MRI LUMBAR SPINE", "row_rejected")
    assert reason.startswith("not a code: the cell's first word holds no digit and no code map lists it (code_with_desc")
    assert loads["imaging_orders"].rows_rejected == 1


def test_code_cells_are_read_whole_without_the_setting(small_input, tmp_path):
    """Off by default: an extract the config says nothing of reads as before (the whole cell is the code)."""
    _described_orders(small_input, with_name=False)
    con, _ = _load(small_input, load_config(None), tmp_path)
    codes = [c for (c,) in con.execute("SELECT order_code FROM src_imaging_orders ORDER BY order_id").fetchall()]
    assert codes == [cell.upper() for _, cell, *_ in DESCRIBED]
    assert con.execute("SELECT count(order_name) FROM src_imaging_orders").fetchall() == [(0,)]


def test_a_diagnosis_code_with_its_description_has_no_name_column_to_fill(small_input, tmp_path):
    write_csv(small_input / "diagnoses.csv", ["patient_id", "diagnosis_code", "recorded_at"], [
        ["MRN-2", "M54.5 - Low back pain", "2025-06-04 08:00:00"],
        ["MRN-2", "ICD-10-CM: G97.1", "2025-06-04 08:00:00"],
    ])  # fmt: skip
    cfg, _ = _config(tmp_path, "[formats.diagnoses]\ncode_with_description = true\n")
    con, _ = _load(small_input, cfg, tmp_path)
    assert con.execute("SELECT diagnosis_code FROM src_diagnoses ORDER BY 1").fetchall() == [("G97.1",), ("M54.5",)]


def test_inspect_writes_code_with_description_when_most_cells_hold_one(small_input, tmp_path):
    """Inspect names the cells, lists the codes as the loader will read them (with their descriptions as names),
    counts the cells whose first word is no code, and writes the setting; the run then reads them."""
    _described_orders(small_input, with_name=False)
    config, lines = inspect_writing_config(small_input, tmp_path)
    at = lines.index("imaging_orders: imaging_orders.csv (found by name), 6 rows")
    assert lines[at + 1 : at + 3] == [
        "  PROBLEM    order_code: 1 cell holds no code before the description (e.g. 'MRI LUMBAR SPINE': its first word"
        " holds no digit and no code map lists it); code_with_description = true sets their rows aside (rejects.csv): put"
        " the code in those cells, or a local code without a digit in local_code_map.csv",
        "  code cells order_code: 4 of 6 cells hold a code and its description (e.g. '72148 - MRI LUMBAR SPINE WO CONTRAST');"
        " the code is read as the first word (code_with_description = true)",
    ]
    assert "  no map     24558-9 'LUMBAR SPINE XR': 1 order (LOINC form): not evaluable until mapped" in lines
    section = config.read_text(encoding="utf-8").split("[formats.imaging_orders]\n")[1].split("\n\n")[0]
    assert section == (
        "code_with_description = true   # 4 of 6 order_code cells hold a code and its description; the code is read as "
        "the first word"
    )
    template = pl.read_csv(tmp_path / "site" / "local_code_map.csv", infer_schema=False)
    assert template["code"].to_list() == ["24558-9"]
    r = run_cli("validate", "--input", small_input, "--config", config)
    assert r.returncode == 0, r.stderr


SITE_CODED = [
    ("O1", "LOC-DSM Dural leak MRI", "LOC-DSM", "Dural leak MRI"),  # the site's map lists it: a code, without a digit
    ("O2", "loc-mrmyelo - MR myelogram", "LOC-MRMYELO", "MR myelogram"),
    ("O3", "72148 MRI L-spine", "72148", "MRI L-spine"),
    ("O4", "LOC-NOPE Special study", None, None),  # no map lists it, and no digit: a description alone
]


def test_a_local_code_the_site_map_lists_is_a_code_without_a_digit(small_input, tmp_path):
    """'LOC-DSM Dural leak MRI' was read as a description alone (its first word holds no digit) and its row set
    aside: a code the site's code map lists is a code, in the loader as in inspect."""
    (small_input / "local_code_map.csv").write_text(
        (ROOT / "examples" / "local_code_map.csv").read_text(encoding="utf-8"), encoding="utf-8"
    )
    rows = [[o, "MRN-1", "2025-06-06 10:00:00", cell, "Neurology", "", "completed"] for o, cell, *_ in SITE_CODED]
    write_csv(small_input / "imaging_orders.csv", ORDER_HEADER, rows)
    cfg, config = _config(tmp_path, "[formats.imaging_orders]\ncode_with_description = true\n")
    con, loads = _load(small_input, cfg, tmp_path)
    got = con.execute("SELECT order_id, order_code, order_name FROM src_imaging_orders ORDER BY 1").fetchall()
    assert got == [(o, code, name) for o, _, code, name in SITE_CODED if code]
    assert [(line, value) for line, _, value, *_ in _rejects(con, "imaging_orders")] == [(5, "LOC-NOPE Special study")]
    lines = run_cli("inspect", "--input", small_input, "--config", config).stdout.splitlines()
    at = lines.index("imaging_orders: imaging_orders.csv (found by name), 4 rows")
    assert lines[at + 1].startswith("  PROBLEM    order_code: 1 cell holds no code before the description (e.g. 'LOC-NOPE")
    assert lines[at + 2].startswith("  code cells order_code: 3 of 4 cells hold a code and its description")
    assert not [line for line in lines if "LOC-DSM" in line or "LOC-MRMYELO" in line]  # mapped: not listed to map


# -------------------------------------------------------------------------------------------- decimal_comma


def _ages(folder, ages: list[str]):
    rows = [[f"PR{i}", f"MRN-{i}", "2025-06-02 09:00:00", "62323", "Pain clinic", "1970-05-05", a] for i, a in enumerate(ages)]
    write_csv(folder / "procedures.csv", [*PROC_HEADER, "patient_age"], rows)


def test_decimal_comma_reads_european_numbers_and_rejects_the_rest_with_the_reason(small_input, tmp_path):
    _ages(small_input, ["45,5", "52", "1.234,5", "45.5", "-", "99,25"])
    cfg, _ = _config(tmp_path, "[formats.procedures]\ndecimal_comma = true\n")
    con, _ = _load(small_input, cfg, tmp_path)
    ages = con.execute("SELECT procedure_id, patient_age FROM src_procedures ORDER BY 1").fetchall()
    assert ages == [("PR0", 45.5), ("PR1", 52.0), ("PR2", None), ("PR3", None), ("PR4", None), ("PR5", 99.25)]
    rejects = {line: (value, reason, action) for line, column, value, reason, action in _rejects(con, "procedures")}
    assert rejects[4] == ("1.234,5", "outside the possible range 0 to 130", "value_nulled")  # read: 1234.5
    value, reason, action = rejects[5]
    assert (value, action) == ("45.5", "value_nulled")
    assert reason.startswith("not a number as decimal_comma = true under [formats] reads one (45,5 or 1.234,5")
    assert rejects[6][0] == "-"
    assert sorted(rejects) == [4, 5, 6]


def test_a_decimal_comma_is_not_a_number_without_the_setting(small_input, tmp_path):
    _ages(small_input, ["45,5", "45.5"])
    con, _ = _load(small_input, load_config(None), tmp_path)
    assert con.execute("SELECT patient_age FROM src_procedures ORDER BY procedure_id").fetchall() == [(None,), (45.5,)]
    assert [(line, reason) for line, _, _, reason, _ in _rejects(con, "procedures")] == [(2, "not a number")]


def test_inspect_writes_decimal_comma_and_names_a_column_that_mixes_both(small_input, tmp_path):
    _ages(small_input, ["45,5", "52", "1.234,5"])
    config, lines = inspect_writing_config(small_input, tmp_path)
    assert "  numbers    written with a decimal comma (45,5): patient_age 2; read as decimals (decimal_comma = true)" in lines
    section = config.read_text(encoding="utf-8").split("[formats.procedures]\n")[1].split("\n\n")[0]
    assert section == "decimal_comma = true   # written with a decimal comma (45,5): patient_age 2; read as decimals"
    _ages(small_input, ["45,5", "45.5", "52"])
    r = run_cli("inspect", "--input", small_input)
    assert (
        "  PROBLEM    patient_age: 1 value written with a decimal comma (45,5) while others have a decimal point (45.5), "
        "which decimal_comma = false does not read as a number (it is left empty, listed in rejects.csv): export every "
        "number one way"
    ) in r.stdout.splitlines()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('decimal_comma = "yes"', "[formats.procedures].decimal_comma: expected true or false, got 'yes'"),
        ("code_with_description = 1", "[formats.procedures].code_with_description: expected true or false, got 1"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(tmp_path, setting, message):
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, f"[formats.procedures]\n{setting}\n")
    assert str(caught.value).endswith(message)


def test_the_settings_keep_the_parse_streaming(small_input, tmp_path):
    """The code and number readings are Polars expressions on the streaming engine (as every typing expression must
    be: one that is not makes Polars hold the whole extract, tests/test_load.py)."""
    _ages(small_input, ["45,5"])
    cfg, _ = _config(tmp_path, "[formats.procedures]\ndecimal_comma = true\ncode_with_description = true\n")
    contract = next(c for c in load.CONTRACTS if c.name == "procedures")
    f = load.InputFile("procedures", small_input / "procedures.csv", "csv")
    lf, schema = load.scan(f, load._column_map(f, contract, cfg))
    graph = load.typed_frame(lf, schema, contract, cfg, known_codes={"LOC-DSM"}).show_graph(  # the map's codes: is_in
        engine="streaming", plan_stage="physical", raw_output=True, show=False
    )
    assert "in-memory engine fallback" in graph
    assert [line for line in graph.splitlines() if 'fillcolor="0.0 0.3 1.0"' in line] == []


# ------------------------------------------------------------------------------------ [extract] declared reach


def _volume(folder, config=None):
    import json

    args = ["validate", "--input", folder, "--json"] + (["--config", config] if config else [])
    r = run_cli(*args, env={"ORDER_AUDIT_PSEUDONYM_KEY": "extract-shapes-test-key"})
    assert r.returncode == 0, r.stderr
    volume = next(c for c in json.loads(r.stdout) if c["check_id"] == "orders.volume.monthly")
    return volume["status"], volume["violated_count"], volume["denominator"]


def test_a_csv_extract_declares_its_reach_in_the_config_as_a_manifest_does(tmp_path):
    """A CSV of 2025-01-02 to 2025-06-30, two orders a day: by the orders' own dates January is covered in part (its
    first day has none), so February to April are the baseline and May and June are judged; declared since January 1,
    January is whole too and April is judged as well. Through June 29 (a date: through its end), June's last day is
    past the extract's reach: June is covered in part and not judged; through June 30 it is again."""
    import datetime as dt

    from test_false_alarms import _two_a_day

    source = _two_a_day(tmp_path / "in", dt.date(2025, 1, 2))  # to 2025-06-30
    declared = {
        "": ("passed", 0, 2),
        "data_since = 2025-01-01": ("passed", 0, 3),
        "data_since = 2025-01-01\ndata_through = 2025-06-30": ("passed", 0, 3),
        'data_since = "2025-01-01"\ndata_through = 2025-06-29': ("passed", 0, 2),
    }
    got = {}
    for i, lines in enumerate(declared):
        config = tmp_path / f"site{i}.toml"
        config.write_text(f"[extract]\n{lines}\n", encoding="utf-8")
        got[lines] = _volume(source, config)
    assert got == declared


def test_the_declared_reach_is_recorded_in_run_json(small_input, tmp_path):
    import json

    _, config = _config(tmp_path, "[extract]\ndata_since = 2025-06-01\ndata_through = 2025-06-30T20:00:00-04:00\n")
    r = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--config", config)
    assert r.returncode == 0, r.stderr
    run = json.loads((tmp_path / "out" / "run.json").read_text(encoding="utf-8"))
    assert run["extract_declared"] == {"data_since": "2025-06-01T04:00:00+00:00", "data_through": "2025-07-01T00:00:00+00:00"}
    r = run_cli("run", "--input", small_input, "--out", tmp_path / "out2")
    assert r.returncode == 0, r.stderr
    run = json.loads((tmp_path / "out2" / "run.json").read_text(encoding="utf-8"))
    assert "extract_declared" not in run and "extract" not in run["config"]  # nothing declared: as before


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("data_since = 2024-13-01", None),  # not TOML: its own line
        ('data_since = "2024-13-01"', "[extract].data_since: '2024-13-01' is not a date or a time (write it as 2024-07-01,"),
        ('data_through = "April"', "[extract].data_through: 'April' is not a date or a time"),
        ("data_through = 10:00:00", "[extract].data_through: datetime.time(10, 0) is not a date or a time"),
        ("data_until = 2026-04-30", "[extract]: unknown setting(s) data_until; known: data_since, data_through"),
        ("data_since = 2026-05-01\ndata_through = 2026-04-30", "[extract] data_since = 2026-05-01 is not before data_through"),
    ],
)
def test_a_bad_declared_reach_stops_before_anything_is_read(small_input, tmp_path, lines, message):
    config = tmp_path / "site.toml"
    config.write_text(f"[extract]\n{lines}\n", encoding="utf-8")
    r = run_cli("validate", "--input", small_input, "--config", config)
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert (message or "not valid TOML") in r.stderr


@pytest.mark.parametrize(
    ("zone", "since", "day"),
    [
        ("America/New_York", None, None),  # nothing declared: the audits' models guess from the volume
        ("America/New_York", "2024-09-15", "2024-09-15"),  # a date: its site-local midnight, that day is whole
        ("America/New_York", "2024-09-15T00:00:00", "2024-09-15"),  # local midnight: the day is whole
        ("America/New_York", "2024-09-15T04:00:00Z", "2024-09-15"),  # the same instant in UTC
        ("America/New_York", "2024-09-15T00:00:01", "2024-09-16"),  # a second into the day: not all of it is held
        ("America/New_York", "2024-09-15T03:30:00Z", "2024-09-15"),  # 23:30 on the 14th, local: the 15th is whole
        ("America/New_York", "2024-09-15T12:00:00+02:00", "2024-09-16"),  # 06:00 on the 15th, local
        # midnight that never happens (Havana springs forward at midnight): the declared date is still whole
        ("America/Havana", "2024-03-10", "2024-03-10"),
    ],
)
def test_the_declared_start_is_the_first_site_local_day_it_holds_whole(zone, since, day):
    """``[extract] data_since`` as the audits' models read it (``declared_start_date`` in every ``<id>__parameters``):
    the first site-local day that begins at or after the declared instant; NULL (typed DATE) when nothing is declared."""
    import datetime as dt

    import duckdb

    from pipeline.config import Config, Extract
    from pipeline.models import reference

    cfg = Config(site_timezone=zone, extract=Extract(data_since=since))
    assert reference.declared_start_date(cfg) == (dt.date.fromisoformat(day) if day else None)
    con = duckdb.connect()
    from pipeline import audits

    lbp = [a for a in audits.discover() if a.id == "low_back_pain"]
    reference.load_reference(con, cfg, None, lbp)
    got = con.execute("SELECT declared_start_date, typeof(declared_start_date) FROM low_back_pain__parameters").fetchall()
    assert got == [(dt.date.fromisoformat(day) if day else None, "DATE")]
