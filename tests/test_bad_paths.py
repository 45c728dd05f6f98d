"""A corpus of hostile and faulty paths, each with its exact outcome, through the real CLI.

The sibling of test_bad_inputs.py for what surrounds the data: --out, --warehouse and
--reid-file. Each case gives the right result, or one line (no traceback) with exit 1
before any parsing; nothing the user owns is touched, and no crosswalk of raw ids lands
beside the reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from conftest import ROOT
from conftest import run_cli as _run_cli
from test_scheduling import HOLD_WRITER_LOCK

KEY = {"ORDER_AUDIT_PSEUDONYM_KEY": "bad-paths-test-key"}
RAW_IDS = ("MRN-1", "MRN-2")  # the patient ids of conftest.write_small_input


def run_cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return _run_cli(*args, env={**KEY, **(env or {})})


def one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """Exit ``code`` with exactly one line on stderr, an ``order-audit: error:`` holding every needle."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("order-audit: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry under folder (links as their target, files as their bytes), not following links."""
    found: dict[str, bytes | str] = {}
    for root, dirs, names in os.walk(folder):
        for name in dirs + names:
            p = Path(root) / name
            rel = p.relative_to(folder).as_posix()
            found[rel] = "-> " + os.readlink(p) if p.is_symlink() else (p.read_bytes() if p.is_file() else "dir")
    return found


def run_audit(inp: Path, out: Path, *extra) -> subprocess.CompletedProcess:
    return run_cli("run", "--input", inp, "--out", out, "--no-validate", "--quiet", *extra)


# ------------------------------------------------------------------ --out through a user's symlink


def test_out_as_a_relative_symlink_to_a_users_folder_keeps_that_folder(small_input, tmp_path):
    """The reported case: `ln -s keep out; run --out out` deleted keep/. The link is followed instead."""
    site = tmp_path / "site"
    (site / "keep").mkdir(parents=True)
    (site / "keep" / "notes.txt").write_text("precious\n")
    (site / "out").symlink_to("keep")  # relative, as `ln -s keep out` makes it
    for _ in range(2):  # the second run replaces the first run's files, never the folder
        result = run_audit(small_input, site / "out")
        assert result.returncode == 0, result.stderr
        assert (site / "keep" / "notes.txt").read_text() == "precious\n"
        assert os.readlink(site / "out") == "keep"  # the user's link, unchanged
        assert (site / "keep" / "run.json").is_file() and (site / "keep" / "csf_leak" / "report.html").is_file()
    # nothing half-made left beside them; the lock of the folder published into (docs/SCHEDULING.md, Locks)
    assert sorted(p.name for p in site.iterdir()) == [".keep.lock", "keep", "out"]
    assert not (site / "keep" / ".order-audit-made").exists()  # the user's folder is not marked as ours


def test_a_link_to_our_own_output_link_publishes_through_it(small_input, tmp_path):
    """`o2 -> out -> .out.v-<run>` (out made by order-audit): the run publishes at out and keeps o2."""
    assert run_audit(small_input, tmp_path / "out").returncode == 0
    (tmp_path / "o2").symlink_to("out")
    first = os.readlink(tmp_path / "out")
    result = run_audit(small_input, tmp_path / "o2")
    assert result.returncode == 0, result.stderr
    assert os.readlink(tmp_path / "o2") == "out"
    second = os.readlink(tmp_path / "out")
    assert second != first and not (tmp_path / first).exists()  # our previous version went, as it should
    assert json.loads((tmp_path / "o2" / "run.json").read_text())["run_id"] in second


def test_folders_that_only_look_like_leftovers_are_never_removed(small_input, tmp_path):
    """Sweeping goes by the mark, not the name: a user's folders named like a dead run's are kept."""
    assert run_audit(small_input, tmp_path / "out").returncode == 0
    lookalikes = [
        tmp_path / ".out.staging-999999",  # a staging name with a dead pid
        tmp_path / ".out.v-20200101T000000Z-abcdef.999999",  # a version name no link points to
    ]
    for folder in lookalikes:
        folder.mkdir()
        (folder / "notes.txt").write_text("precious\n")
    # an order-audit run.json of another run (a copy of some output folder): not this name's version, so kept; and
    # order-audit's, so the run may replace it (a run.json no run wrote stops the run: test_a_users_folder_whose_...)
    (tmp_path / ".out.v-20200101T000000Z-abcdef.999999" / "run.json").write_text(
        '{"run_id": "someone else", "software_version": "0.1.0"}'
    )
    (tmp_path / "out").unlink()
    (tmp_path / "out").symlink_to(".out.v-20200101T000000Z-abcdef.999999")  # and --out points at it
    result = run_audit(small_input, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    for folder in lookalikes:
        assert (folder / "notes.txt").read_text() == "precious\n", folder
    # the look-alike link was the user's: followed, and the outputs were written into that folder
    assert os.readlink(tmp_path / "out") == ".out.v-20200101T000000Z-abcdef.999999"
    assert json.loads((tmp_path / "out" / "run.json").read_text())["run_id"] != "someone else"


def test_out_dot_stages_beside_the_working_folder_and_keeps_it(small_input, tmp_path):
    """`--out .` used to stage inside the output folder itself (`./..staging-<pid>`), where a killed
    run left it for good; the working folder is never replaced by a link either."""
    work = tmp_path / "work"
    work.mkdir()

    def here(*extra_env) -> subprocess.CompletedProcess:
        env = {**os.environ, **KEY, **dict(extra_env), "PYTHONPATH": str(ROOT)}  # this checkout's code, not the installed
        args = ["run", "--input", str(small_input), "--out", ".", "--no-validate", "--quiet"]
        return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=work, env=env, capture_output=True, text=True)

    killed = here(("ORDER_AUDIT_FAULT", "mid_render"))
    assert killed.returncode == -9, killed.stderr
    assert [p.name for p in work.iterdir() if p.name.startswith(".")] == []  # nothing half-made inside
    result = here()
    assert result.returncode == 0, result.stderr
    assert work.is_dir() and not work.is_symlink() and (work / "run.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".work.lock", "in", "work"]  # the dead run's staging swept


# ------------------------------------------------------------------ --reid-file: never near the outputs


@pytest.mark.parametrize(
    ("where", "needle"),
    [
        ("out/reid.csv", "inside the output folder"),  # --out is a symlink to a version folder: resolved
        ("link/sub/reid.csv", "inside the output folder"),  # a second link to the same folder
        ("in/reid.csv", "inside the input folder"),
        ("whdir/restricted/reid.csv", "inside the warehouse's folder"),
    ],
)
def test_reid_file_near_outputs_inputs_or_warehouse_is_refused_before_any_work(small_input, tmp_path, where, needle):
    assert run_audit(small_input, tmp_path / "out").returncode == 0  # out -> .out.v-...: a symlink now
    (tmp_path / "link").symlink_to("out")
    before = tree(tmp_path / "out")
    reid = tmp_path / where
    result = run_audit(small_input, tmp_path / "out", "--reid-file", reid, "--warehouse", tmp_path / "whdir" / "wh.duckdb")
    one_line_error(result, 1, "--reid-file", needle, "raw patient ids")
    assert not reid.exists() and not (tmp_path / "whdir").exists()  # refused before the warehouse was made
    assert tree(tmp_path / "out") == before


def test_reid_file_elsewhere_is_written_and_no_output_holds_a_raw_id(small_input, tmp_path):
    reid = tmp_path / "restricted" / "reid.csv"
    result = run_audit(small_input, tmp_path / "out", "--reid-file", reid)
    assert result.returncode == 0, result.stderr
    assert reid.stat().st_mode & 0o777 == 0o600
    assert {line.split(",")[1] for line in reid.read_text().splitlines()[1:]} == set(RAW_IDS)
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file() and path.suffix in (".csv", ".html", ".json"):
            text = path.read_text(encoding="utf-8")
            assert not any(raw in text for raw in RAW_IDS), path


@pytest.mark.parametrize("kind", ["the user's file", "a link to the user's file"])
def test_reid_file_never_replaces_or_writes_through_what_is_not_a_crosswalk(small_input, tmp_path, kind):
    """--reid-file naming a user's file replaced it with the crosswalk, exit 0; naming a symlink wrote the raw ids to
    the file it named and made that 0600 (the hostile review). Both are refused before any work; a crosswalk written
    before is replaced, whole (a new file renamed over it), and a rerun gives the same file."""
    (tmp_path / "restricted").mkdir()
    mine = tmp_path / "restricted" / "mine.csv"
    mine.write_text("USER PRECIOUS\n")
    given = mine
    if kind != "the user's file":
        given = tmp_path / "restricted" / "link.csv"
        given.symlink_to(mine)
    result = run_audit(small_input, tmp_path / "out", "--reid-file", given)
    one_line_error(result, 1, "--reid-file", "nothing was written")
    assert mine.read_text() == "USER PRECIOUS\n" and mine.stat().st_mode & 0o777 != 0o600
    assert not (tmp_path / "out").exists()
    reid = tmp_path / "restricted" / "reid.csv"
    for _ in range(2):  # a crosswalk order-audit wrote is replaced
        assert run_audit(small_input, tmp_path / "out", "--reid-file", reid).returncode == 0
        assert reid.read_text().startswith("patient_key,patient_id\n") and reid.stat().st_mode & 0o777 == 0o600
    assert {p.name for p in (tmp_path / "restricted").iterdir()} == {"mine.csv", "reid.csv", given.name}  # no temp file


# ------------------------------------------------------------------ --out and --warehouse that cannot work


def test_warehouse_inside_the_output_folder_is_refused_before_any_work(small_input, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("the user's\n")
    result = run_audit(small_input, tmp_path / "out", "--warehouse", tmp_path / "out" / "wh" / "wh.duckdb")
    one_line_error(result, 1, "--warehouse", "inside the output folder", "raw patient ids")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["notes.txt"]  # no warehouse, lock or report made


@pytest.mark.parametrize(("out", "kept"), [("wh.duckdb", False), ("wh.duckdb.sources/r", True)])
def test_out_the_warehouses_own_path_is_refused_before_any_work(small_input, tmp_path, out, kept):
    """--out the path of a new --warehouse loaded and committed the warehouse, then stopped with a traceback
    (FileExistsError) making the output folder over it (an existing one is refused as a file); --out in the
    warehouse's .sources published the reports among the Parquet files of raw extracts. Refused before any work,
    nothing written."""
    wh = tmp_path / "wh.duckdb"
    if kept:
        assert run_audit(small_input, tmp_path / "first", "--warehouse", wh).returncode == 0
    before = tree(tmp_path)
    result = run_audit(small_input, tmp_path / out, "--warehouse", wh)
    one_line_error(result, 1, f"--out {tmp_path / out} is the warehouse's own path", "nothing was changed")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("out", [".", "..", "link"])
def test_input_inside_the_output_folder_is_refused_before_any_work(small_input, tmp_path, out):
    """--out the extracts' folder (`--out .` from it, its parent, a link to it): the run published its reports into
    the folder of raw extracts, each id in the clear beside them. Refused before any work, nothing written."""
    (tmp_path / "link").symlink_to(small_input)
    before = tree(tmp_path)
    args = ["run", "--input", small_input, "--out", out, "--no-validate", "--quiet"]
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *map(str, args)],
        cwd=small_input if out != "link" else tmp_path,
        env={**os.environ, **KEY, "PYTHONPATH": str(ROOT)},  # this checkout's code, from another working folder
        capture_output=True,
        text=True,
    )
    one_line_error(result, 1, "--input", "inside the output folder", "raw patient ids")
    assert tree(tmp_path) == before


def test_out_inside_the_input_folder_is_refused_before_any_work(small_input, tmp_path):
    """--out a folder inside the extracts' folder: the run wrote its lock, version folder and reports into the
    site's export, which a run only reads (and the next export may replace). Refused, nothing written."""
    before = tree(tmp_path)
    result = run_audit(small_input, small_input / "reports", "--warehouse", tmp_path / "wh.duckdb")
    one_line_error(result, 1, f"--out {small_input / 'reports'} is inside the input folder", "nothing was changed")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("theirs", ["index.html", "run.json"])
def test_a_users_folder_whose_index_or_run_json_a_run_would_replace_is_refused(small_input, tmp_path, theirs):
    """--out a web server's root or a shared folder: its own index.html (or run.json) was replaced by the site
    index. Refused before any work."""
    www = tmp_path / "www"
    www.mkdir()
    (www / theirs).write_text("the site's own page\n")
    (www / "notes.txt").write_text("precious\n")
    before = tree(www)
    result = run_audit(small_input, www, "--warehouse", tmp_path / "wh.duckdb")
    one_line_error(result, 1, "--out", theirs, "no order-audit run wrote", "would replace it;", "move it away")
    assert tree(www) == before and not (tmp_path / "wh.duckdb").exists()


def test_a_folder_earlier_runs_published_into_still_takes_reruns(small_input, tmp_path):
    """The other side of the refusal above (once, not once per refused file: the reruns do not depend on it): a
    folder the runs publish into, file by file, a backfill's too; the run's own index.html and run.json are
    replaced, the user's files beside them kept."""
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("precious\n")
    for _ in range(2):
        assert run_audit(small_input, plain, "--warehouse", tmp_path / "wh2.duckdb").returncode == 0
        assert (
            run_audit(
                small_input, plain / "bf", "--warehouse", tmp_path / "wh2.duckdb", "--from", "2025-06", "--to", "2025-06"
            ).returncode
            == 0
        )
    assert (plain / "notes.txt").read_text() == "precious\n"


def test_out_that_is_a_file_stops_before_parsing(small_input, tmp_path):
    (tmp_path / "report").write_text("a file of the user's\n")
    result = run_audit(small_input, tmp_path / "report", "--warehouse", tmp_path / "wh.duckdb")
    one_line_error(result, 1, "--out", "is a file, not a folder")  # one line: nothing was parsed (it used to fail after the run)
    assert (tmp_path / "report").read_text() == "a file of the user's\n"
    assert not (tmp_path / "wh.duckdb").exists()  # nothing parsed, no warehouse made


def test_a_relative_out_that_is_a_file_is_named_without_a_link(tmp_path, monkeypatch):
    """`--out afile` from the file's folder said "(through a link, /abs/afile)": no link was there."""
    import types

    from pipeline import preflight
    from pipeline.errors import ConfigError

    (tmp_path / "afile").write_text("the user's\n")
    (tmp_path / "link").symlink_to("afile")
    monkeypatch.chdir(tmp_path)
    said = {}
    for given, followed in (("afile", tmp_path / "afile"), ("link", tmp_path / "afile")):
        with pytest.raises(ConfigError) as refused:
            preflight.check_run(types.SimpleNamespace(out_dir=Path(given), per_month_folders=False), followed)
        said[given] = str(refused.value)
    assert said["afile"].startswith("--out afile is a file, not a folder;")
    assert said["link"].startswith(f"--out link is a file (through a link, {tmp_path / 'afile'}), not a folder;")


def test_out_below_a_file_stops_before_parsing(small_input, tmp_path):
    (tmp_path / "report").write_text("x\n")
    one_line_error(run_audit(small_input, tmp_path / "report" / "2026-10"), 1, "--out", "is a file, not a folder")


JUNK = {
    "random_bytes": lambda: os.urandom(64 * 1024),
    "empty": lambda: b"",
    "text": lambda: b"warehouse = notes\n" * 100,
}


@pytest.mark.parametrize("kind", sorted(JUNK))
@pytest.mark.parametrize("command", ["run", "runs", "diff", "validate"])
def test_warehouse_that_is_not_duckdb_is_one_line_and_untouched(small_input, tmp_path, kind, command):
    """The commands that only read a warehouse do not suggest a new path: they never make one."""
    wh = tmp_path / "wh.duckdb"
    wh.write_bytes(JUNK[kind]())
    before = wh.read_bytes()
    args = {
        "run": ("run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", wh, "--no-validate"),
        "runs": ("runs", "--warehouse", wh),
        "diff": ("diff", "A", "B", "--warehouse", wh),
        "validate": ("validate", "--input", small_input, "--warehouse", wh),
    }[command]
    line = one_line_error(run_cli(*args), 1, "--warehouse", "empty file" if kind == "empty" else "not a DuckDB database file")
    assert ("start a new warehouse" in line) == (command == "run"), line
    assert wh.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "wh.duckdb"]  # no lock, no scratch, no output


@pytest.mark.parametrize("command", ["run", "runs"])
def test_warehouse_with_a_duckdb_header_but_corrupt_is_one_line(small_input, tmp_path, command):
    good = tmp_path / "good.duckdb"
    duckdb.connect(str(good)).close()
    wh = tmp_path / "wh.duckdb"
    wh.write_bytes(good.read_bytes()[:12] + os.urandom(300 * 1024))
    before = wh.read_bytes()
    args = ("runs", "--warehouse", wh) if command == "runs" else ("run", "--input", small_input, "--out", tmp_path / "out")
    result = run_cli(*args, *(("--warehouse", wh, "--no-validate") if command == "run" else ()))
    one_line_error(result, 1, "--warehouse", "cannot be opened")
    assert wh.read_bytes() == before and not (tmp_path / "out").exists()


def _warehouse_args(command: str, small_input: Path, tmp_path: Path, wh: Path, *extra) -> tuple:
    return {
        "run": ("run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", wh, "--no-validate", *extra),
        "runs": ("runs", "--warehouse", wh, *extra),
        "diff": ("diff", "A", "B", "--warehouse", wh, *extra),
        "validate": ("validate", "--input", small_input, "--warehouse", wh, *extra),
    }[command]


def someone_elses_database(path: Path) -> None:
    """A DuckDB file of another program's, one of its tables named as the run history is, with other columns."""
    con = duckdb.connect(str(path))
    try:
        con.execute("CREATE TABLE sales AS SELECT 1 AS id")
        con.execute("CREATE TABLE audit_runs (note VARCHAR)")
    finally:
        con.close()


@pytest.mark.parametrize("command", ["run", "runs", "diff", "validate"])
def test_a_duckdb_database_order_audit_did_not_make_is_refused_unchanged(small_input, tmp_path, command):
    """A run altered such a file's audit_runs table and added its own tables (and a .lock file) before it crashed
    with a traceback; runs listed it as a warehouse without runs (exit 0)."""
    wh = tmp_path / "other.duckdb"
    someone_elses_database(wh)
    before = wh.read_bytes()
    line = one_line_error(
        run_cli(*_warehouse_args(command, small_input, tmp_path, wh)),
        1,
        f"--warehouse {wh} is a DuckDB database that order-audit did not make (it holds table audit_runs, table sales)",
        "give --warehouse the file an earlier run made",
        "(nothing was changed)",
    )
    assert ("a new path to start a warehouse" in line) == (command == "run"), line
    assert wh.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "other.duckdb"]  # no lock, no scratch, no output


def test_the_writer_lock_checks_the_file_again_and_takes_back_the_lock_file_it_made(tmp_path):
    """The check before the lock cannot look into a file another process holds open (nor see it replaced since):
    the run's writer lock checks it again, and a refusal leaves no lock file it made (one already there stays)."""
    from pipeline import warehouse
    from pipeline.errors import ConfigError

    wh = tmp_path / "other.duckdb"
    someone_elses_database(wh)
    with pytest.raises(ConfigError, match="order-audit did not make"), warehouse.writer_lock(wh, "R1", "run"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.duckdb"]
    (tmp_path / "other.duckdb.lock").write_text("")
    with pytest.raises(ConfigError, match="order-audit did not make"), warehouse.writer_lock(wh, "R1", "run"):
        pass
    assert (tmp_path / "other.duckdb.lock").exists()


def test_a_lock_file_made_for_a_warehouse_or_out_never_made_is_taken_back(tmp_path):
    """A run refused by the --out lock (exit 4) after it took the warehouse's, or stopped by a full disk before the
    warehouse existed, left `<warehouse>.lock` beside a warehouse it never made. A lock made for a path the block
    never made is removed as the lock ends; one beside what the block made, or found there before, stays."""
    from pipeline import publishing, warehouse
    from pipeline.errors import WarehouseLockedError

    wh, out = tmp_path / "wh.duckdb", tmp_path / "out"
    with pytest.raises(WarehouseLockedError), warehouse.writer_lock(wh, "R1", "run"):
        assert (tmp_path / "wh.duckdb.lock").exists()  # held while the run goes on
        raise WarehouseLockedError("--out out: another run publishes into it")
    with warehouse.writer_lock(wh, "R1", "run"), publishing.publication_lock(out, "R1", "run", wh):
        pass  # a run that stopped before writing anything
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    with warehouse.writer_lock(wh, "R2", "run"), publishing.publication_lock(out, "R2", "run", wh):
        duckdb.connect(str(wh)).close()
        out.mkdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out", "wh.duckdb", "wh.duckdb.lock"]
    (tmp_path / "other.duckdb.lock").write_text("")  # found there: not this run's to remove
    with pytest.raises(RuntimeError), warehouse.writer_lock(tmp_path / "other.duckdb", "R3", "run"):
        raise RuntimeError("stopped")
    assert (tmp_path / "other.duckdb.lock").read_text() != ""  # held, written, kept


@pytest.mark.parametrize("lock", ["wh.duckdb.lock", ".out.lock"])
@pytest.mark.parametrize("kind", ["notes", "link", "folder"])
def test_a_file_of_the_lock_s_name_that_no_run_wrote_is_refused_untouched(small_input, tmp_path, lock, kind):
    """The hostile review: a new warehouse's `wh.duckdb.lock` holding a user's notes was emptied and written over
    (the lock is order-audit's by name alone), and `.out.lock` as a link had the holder written over the file it
    names. One line naming the file, exit 1, the user's file as it was, nothing else made."""
    found = tmp_path / lock
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes on the warehouse\n")
    if kind == "notes":
        found.write_text("my notes on the warehouse\n")
    elif kind == "link":
        found.symlink_to(notes)
    else:
        found.mkdir()
    r = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", tmp_path / "wh.duckdb")
    assert r.returncode == 1, r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and "Traceback" not in line and str(found) in line, line
    if kind != "folder":  # a folder was refused before: "cannot create its lock file ... (Is a directory)"
        what = "a symbolic link" if kind == "link" else "a file order-audit did not write"
        assert f"{found} is {what}, where order-audit keeps its lock file; nothing was changed" in line, line
    assert notes.read_text() == "my notes on the warehouse\n"
    assert kind != "notes" or found.read_text() == "my notes on the warehouse\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in", "notes.txt", lock])


def test_a_lock_file_a_run_left_is_taken_again(small_input, tmp_path):
    """An empty lock file (a run stopped as it made it) or one naming an earlier run is the lock's own: reused."""
    wh = tmp_path / "wh.duckdb"
    (tmp_path / "wh.duckdb.lock").write_text("")
    assert run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", wh).returncode == 0
    assert json.loads((tmp_path / "wh.duckdb.lock").read_text())["pid"]  # written by that run, and kept
    r = run_cli("run", "--input", small_input, "--out", tmp_path / "out2", "--warehouse", wh)
    assert r.returncode == 0, r.stderr


def test_a_run_that_opened_a_lock_file_as_its_holder_took_it_back_never_shares_the_warehouse(tmp_path, monkeypatch):
    """A run that opens `<warehouse>.lock` just before its holder (a run whose warehouse was never made) removes it
    gets its flock once the holder ends, on a file no longer at the path: a run after made another lock file and
    took it, and the two wrote the same warehouse. The lock taken is the file at the path, opened again if need be."""
    import contextlib

    from pipeline import locks, warehouse
    from pipeline.errors import WarehouseLockedError

    wh, lock = tmp_path / "wh.duckdb", tmp_path / "wh.duckdb.lock"
    first = contextlib.ExitStack()
    first.enter_context(warehouse.writer_lock(wh, "R1", "run"))
    flock = locks.fcntl.flock

    def holder_ends_between_open_and_flock(fd, op):
        first.close()  # R1 ends: its lock file, beside no warehouse, removed; R2 had opened it already
        return flock(fd, op)

    monkeypatch.setattr(locks.fcntl, "flock", holder_ends_between_open_and_flock)
    with warehouse.writer_lock(wh, "R2", "run"):
        monkeypatch.setattr(locks.fcntl, "flock", flock)
        assert json.loads(lock.read_text())["run_id"] == "R2"  # the file at the path is R2's
        with pytest.raises(WarehouseLockedError), warehouse.writer_lock(wh, "R3", "run"):
            pass  # refused: R2 holds the warehouse
    # a file system whose stat and fstat never agree on the inode: opened again a few times, then locked as it is
    monkeypatch.setattr(locks, "_is_at", lambda fd, path: False)
    with warehouse.writer_lock(wh, "R4", "run"):
        assert json.loads(lock.read_text())["run_id"] == "R4"


def test_an_empty_duckdb_file_is_adopted_and_a_warehouse_made_before_the_mark_is_recognised(small_input, tmp_path):
    """A DuckDB file holding nothing is a new warehouse; a run marks what it makes (order_audit_warehouse), and a
    warehouse an earlier version made, without the mark, is known by its run history and marked by its next run."""
    wh = tmp_path / "wh.duckdb"
    duckdb.connect(str(wh)).close()
    assert run_audit(small_input, tmp_path / "out", "--warehouse", wh).returncode == 0
    con = duckdb.connect(str(wh))
    try:
        assert con.execute("SELECT made_by FROM order_audit_warehouse").fetchall() == [("order-audit",)]
        con.execute("DROP TABLE order_audit_warehouse")  # as a version before the mark left it
    finally:
        con.close()
    listed = run_cli("runs", "--warehouse", wh)
    assert listed.returncode == 0 and "succeeded" in listed.stdout, listed.stderr
    again = run_audit(small_input, tmp_path / "out", "--warehouse", wh)
    assert again.returncode == 0, again.stderr
    con = duckdb.connect(str(wh), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM order_audit_warehouse").fetchall() == [(1,)]
    finally:
        con.close()


def _made_warehouse(small_input: Path, tmp_path: Path) -> Path:
    wh = tmp_path / "made" / "wh.duckdb"
    assert run_audit(small_input, tmp_path / "made" / "out", "--warehouse", wh).returncode == 0
    return wh


def _damage_blocks_of(wh: Path, table: str) -> None:
    """Overwrite bytes in every block holding the table's data (its checksum no longer matches), as a failing disk
    or a bad copy does; the file still opens (its catalog is elsewhere)."""
    con = duckdb.connect(str(wh), read_only=True)
    try:
        (block_size,) = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()
        blocks = con.execute(f"SELECT DISTINCT block_id FROM pragma_storage_info('{table}') WHERE block_id >= 0").fetchall()
    finally:
        con.close()
    with wh.open("r+b") as fh:
        for (block,) in blocks:
            fh.seek(3 * 4096 + block * block_size + 100)
            fh.write(b"\xff" * 64)


@pytest.mark.parametrize("command", ["run", "runs"])
def test_a_warehouse_damaged_inside_is_one_line_naming_it_in_the_logs_format(small_input, tmp_path, command):
    """A checksum that does not match in a block the command reads: a traceback of 41 lines, exit 1, and no JSON
    line in a JSON log; now the error event names the file and the remedy."""
    wh = _made_warehouse(small_input, tmp_path)
    _damage_blocks_of(wh, "audit_runs")
    result = run_cli(*_warehouse_args(command, small_input, tmp_path, wh, "--log-format", "json"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    last = json.loads(result.stderr.strip().splitlines()[-1])
    assert (last["event"], last["exit_code"]) == ("error", 1)
    assert last["message"].startswith(f"error: --warehouse {wh} is damaged (Corrupt database file: "), last["message"]
    assert "restore the file from a backup" in last["message"]
    kept = "this run loaded nothing into it and published nothing" if command == "run" else "nothing was changed"
    assert kept in last["message"]
    assert not (tmp_path / "out").exists()


def test_a_stored_rows_file_cut_short_is_one_line_naming_it(small_input, tmp_path):
    """The warehouse's store holds each load's rows as a Parquet file beside it (``wh.duckdb.sources``); one cut
    short (a disk, a copy cut off) made the gate's or the merge's read of it "an unexpected error, a bug in
    order-audit", exit 70, with a traceback. Now one line names the file and the remedy, for validate (the gate
    reads the held orders) and run alike. (A file gone: test_source_store.py, before the extract is read.)"""
    from conftest import ORDER_HEADER, write_csv, write_small_input

    wh = _made_warehouse(small_input, tmp_path)
    (stored,) = (wh.parent / "wh.duckdb.sources" / "imaging_orders").glob("*.parquet")
    stored.write_bytes(stored.read_bytes()[:200])
    july = write_small_input(tmp_path / "july")  # another month's orders: the held file stays the warehouse's
    write_csv(
        july / "imaging_orders.csv", ORDER_HEADER, [["O9", "MRN-1", "2025-07-02 09:00:00", "72148", "Emergency", "", "completed"]]
    )
    commands = {
        "validate": ("validate", "--input", july, "--warehouse", wh),
        "run": ("run", "--input", july, "--out", tmp_path / "out", "--warehouse", wh),
    }
    for command, args in commands.items():
        result = run_cli(*args)
        assert result.returncode == 1 and "Traceback" not in result.stderr, (command, result.stderr)
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"order-audit: error: --warehouse {wh}: its stored rows file {stored} is damaged"), last
        assert "restore the warehouse's wh.duckdb.sources folder with the warehouse file from the same backup" in last
    assert not (tmp_path / "out").exists()


def test_duckdbs_words_for_a_damaged_warehouse_file_are_told_from_other_failures(tmp_path):
    """A file cut short (a copy or restore cut off) reads as a short read of the warehouse file itself; a short read
    of another file (a Parquet file of its .sources store), a bad query or a lock are no damaged warehouse."""
    from pipeline import warehouse

    wh = tmp_path / "wh.duckdb"
    short = 'IO Error: Could not read enough bytes from file "{}": attempted to read 262144 bytes from location 1'
    assert warehouse.damage(duckdb.IOException(short.format(wh)), wh).startswith("IO Error: Could not read enough")
    assert warehouse.damage(duckdb.IOException(short.format(f"{wh}.sources/orders/1.parquet")), wh) is None
    checksum = "Corrupt database file: computed checksum 1 does not match stored checksum 2 in block at location 3"
    assert warehouse.damage(duckdb.Error(checksum), wh) == checksum
    try:  # what a library raised while handling it counts too
        try:
            raise duckdb.Error(checksum)
        except duckdb.Error as inner:
            raise RuntimeError("reading the site code map") from inner
    except RuntimeError as outer:
        assert warehouse.damage(outer, wh) == checksum
    assert warehouse.damage(duckdb.BinderException('Referenced column "status" not found'), wh) is None
    assert warehouse.damage(duckdb.IOException('Could not set lock on file "x": Conflicting lock'), wh) is None


def test_warehouse_that_is_a_folder_is_one_line(small_input, tmp_path):
    (tmp_path / "wh").mkdir()
    result = run_audit(small_input, tmp_path / "out", "--warehouse", tmp_path / "wh")
    one_line_error(result, 1, "--warehouse", "is a folder")
    assert list((tmp_path / "wh").iterdir()) == [] and not (tmp_path / "out").exists()


# ------------------------------------------------------------------ quotes, dollars and spaces in paths


def test_quotes_dollars_and_spaces_in_out_and_warehouse_paths_simply_work(small_input, tmp_path):
    """Paths reach DuckDB as quoted literals, and GX gets the file as an argument, not inside a URL
    (GX substitutes $VAR in connection strings: a folder named like this one failed)."""
    odd = tmp_path / "o'brien $HOME ${NOPE} #1 %20"
    wh, out = odd / "w'h $x.duckdb", odd / "re'ports"
    result = run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh)  # with the gate (GX)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["data_quality"] and all(d["status"] != "error" for d in info["data_quality"])
    assert (odd / "w'h $x.duckdb.sources").is_dir()
    runs = run_cli("runs", "--warehouse", wh)
    assert runs.returncode == 0 and "succeeded" in runs.stdout


# ------------------------------------------------------------------ one warehouse, one lock, whatever the path


def test_a_symlinked_warehouse_takes_the_same_lock(small_input, tmp_path):
    wh = tmp_path / "wh.duckdb"
    assert run_audit(small_input, tmp_path / "out", "--warehouse", wh).returncode == 0
    (tmp_path / "wh2.duckdb").symlink_to("wh.duckdb")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_WRITER_LOCK, str(wh)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        result = run_audit(small_input, tmp_path / "out2", "--warehouse", tmp_path / "wh2.duckdb")
        one_line_error(result, 4, "run 20260101T000000Z-abc123", f"process {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "wh2.duckdb.lock").exists() and not (tmp_path / "out2").exists()
    # and a run through the link afterwards uses the one warehouse: its loads are already there
    assert run_audit(small_input, tmp_path / "out2", "--warehouse", tmp_path / "wh2.duckdb").returncode == 0
    assert not (tmp_path / "wh2.duckdb.sources").exists()
    con = duckdb.connect(str(wh), read_only=True)
    try:
        actions = con.execute("SELECT DISTINCT action FROM load_ledger WHERE run_id = (SELECT max(run_id) FROM load_ledger)")
        assert actions.fetchall() == [("skipped_already_loaded",)]
    finally:
        con.close()


@pytest.mark.parametrize("mine", ["report.html", "notes.txt"])
def test_a_users_folder_named_like_an_audit_in_out_is_refused(small_input, tmp_path, mine):
    """--out a shared folder holding a folder of the user's named like an audit (csf_leak/): the run wrote its
    files into it, replacing the user's own report.html. Refused before any work; the folder a run published
    into takes reruns, and an empty one is used."""
    shared = tmp_path / "shared"
    (shared / "csf_leak").mkdir(parents=True)
    (shared / "csf_leak" / mine).write_text("the user's own\n")
    before = tree(shared)
    result = run_audit(small_input, shared, "--warehouse", tmp_path / "wh.duckdb")
    one_line_error(result, 1, "--out", "csf_leak/", "no order-audit run wrote")
    assert tree(shared) == before and not (tmp_path / "wh.duckdb").exists()
    # an empty folder of that name, then the run's own folder: published into, file by file
    (shared / "csf_leak" / mine).unlink()
    for _ in range(2):
        assert run_audit(small_input, shared, "--warehouse", tmp_path / "wh2.duckdb").returncode == 0
        assert (shared / "csf_leak" / "report.html").is_file()


GLOB_NAME = "Extract [2026-04] {a,b}"  # how sites name folders; to Polars and Hadoop a pattern


@pytest.mark.parametrize("fmt", ["csv", "fhir"])
def test_folders_named_with_glob_characters_are_read_as_named(tmp_path, fmt):
    """Polars reads a path as a glob unless told not to: a folder named "Extract [2026-04]" matched no file, and the
    run ended in a traceback. The input, output and warehouse folders all carry such a name here."""
    root = tmp_path / GLOB_NAME
    made = run_cli("synth", "--patients", "300", "--months", "3", "--seed", "2", "--start", "2025-01", "--format", fmt,
                   "--out", root / "in")  # fmt: skip
    assert made.returncode == 0, made.stderr
    result = run_cli("run", "--input", root / "in", "--out", root / "out", "--warehouse", root / "wh" / "wh.duckdb")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert (root / "out" / "csf_leak" / "report.html").is_file()


def test_every_polars_read_of_a_path_is_no_glob():
    """One check for the whole package: each Polars reader given a path says glob=False (the test above reaches
    only the readers a synthetic run uses)."""
    readers = ("pl.read_csv(", "pl.scan_csv(", "pl.read_parquet(", "pl.scan_parquet(", "pl.scan_lines(", "pl.read_ndjson(",
               "pl.scan_ndjson(", "pl.read_parquet_schema(")  # fmt: skip
    missing = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for reader in readers:
            start = 0
            while (at := text.find(reader, start)) >= 0:
                depth, end = 0, at + len(reader) - 1
                for end in range(at + len(reader) - 1, len(text)):  # the call's closing parenthesis
                    depth += {"(": 1, ")": -1}.get(text[end], 0)
                    if depth == 0:
                        break
                if "glob=False" not in text[at:end]:
                    missing.append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, at) + 1}")
                start = end
    assert missing == [], missing


# ------------------------------------------------------------------ paths DuckDB itself would misread


@pytest.mark.parametrize("where", ["w?h.duckdb", "d?d/wh.duckdb"], ids=["file", "folder"])
def test_a_warehouse_path_holding_a_question_mark_is_one_line_before_any_work(small_input, tmp_path, where):
    """DuckDB takes a '?' in a database path for the start of URL parameters and writes its log before it
    (/a?b/wh.duckdb logs to /a.wal?b/wh.duckdb): the run parsed everything, then stopped with a traceback at the
    first commit (the gate's scratch database, beside the warehouse, the first), leaving a new empty warehouse.
    '#', '%' and ':' are plain characters to it (the test above, and the one below for ':')."""
    before = tree(tmp_path)
    result = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", tmp_path / where)
    one_line_error(result, 1, "--warehouse", "holding '?'", "without '?'")
    assert tree(tmp_path) == before
    # a warehouse moved there: `runs` says the same (DuckDB would look for its log in the wrong place)
    assert run_audit(small_input, tmp_path / "out", "--warehouse", tmp_path / "wh.duckdb").returncode == 0
    (tmp_path / where).parent.mkdir(exist_ok=True)
    (tmp_path / "wh.duckdb").rename(tmp_path / where)
    one_line_error(run_cli("runs", "--warehouse", tmp_path / where), 1, "--warehouse", "holding '?'")


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_temporary_folder_holding_a_question_mark_is_one_line_naming_tmpdir(small_input, tmp_path, command):
    """Without --warehouse a run's warehouse, and `validate`'s gate database, are DuckDB files in TMPDIR."""
    tmp = tmp_path / "t?mp"
    tmp.mkdir()
    args = ["--input", small_input] + (["--out", tmp_path / "out"] if command == "run" else [])
    result = run_cli(command, *args, env={"TMPDIR": str(tmp)})
    one_line_error(result, 1, "TMPDIR", "holding '?'", "set TMPDIR to a folder without '?'")
    assert list(tmp.iterdir()) == [] and not (tmp_path / "out").exists()


def test_a_relative_warehouse_named_like_a_duckdb_extension_is_read_as_the_file(small_input, tmp_path):
    """`runs --warehouse md:wh.duckdb` from the warehouse's folder: DuckDB read the relative name as MotherDuck's
    prefix and tried to download that extension, instead of opening the file."""
    assert run_audit(small_input, tmp_path / "out", "--warehouse", tmp_path / "md:wh.duckdb").returncode == 0
    for command in (["runs"], ["diff", "a", "b"]):
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", *command, "--warehouse", "md:wh.duckdb"],
            cwd=tmp_path,
            env={**os.environ, **KEY, "PYTHONPATH": str(ROOT)},  # this checkout's code, from another working folder
            capture_output=True,
            text=True,
        )
        assert "extension" not in result.stderr and "Traceback" not in result.stderr, result.stderr
        if command == ["runs"]:
            assert result.returncode == 0 and "succeeded" in result.stdout, result.stderr


def test_a_warehouse_path_holding_a_backslash_never_opens_the_file_duckdb_would_read_instead(small_input, tmp_path):
    """DuckDB reads '\\' in a database path as a folder separator: --warehouse 'bs\\user.duckdb' opened and wrote to
    bs/user.duckdb, a user's own database (it gained the ledger's tables), past the lock and ownership checks made
    on the path as typed, then stopped with a traceback. One line, nothing changed."""
    import duckdb  # noqa: PLC0415

    (tmp_path / "bs").mkdir()
    with duckdb.connect(str(tmp_path / "bs" / "user.duckdb")) as con:
        con.execute("CREATE TABLE precious AS SELECT 1 AS n")
    before = tree(tmp_path)
    result = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", f"{tmp_path / 'bs'}\\user.duckdb")
    one_line_error(result, 1, "--warehouse", "holding a backslash", "without '\\'")
    assert tree(tmp_path) == before
    tmp = tmp_path / "t\\mp"  # a folder whose name holds a backslash (legal here): TMPDIR, where the scratch databases go
    tmp.mkdir()
    for command in ("validate", "run"):
        args = ["--input", small_input] + (["--out", tmp_path / "out"] if command == "run" else [])
        result = run_cli(command, *args, env={"TMPDIR": str(tmp)})
        one_line_error(result, 1, "TMPDIR", "holding a backslash", "set TMPDIR to a folder without '\\'")
    assert list(tmp.iterdir()) == [] and not (tmp_path / "out").exists()


def test_the_source_store_sweeps_only_the_files_it_writes(small_input, tmp_path):
    """A new warehouse beside a wh.duckdb.sources folder holding a user's files: the store's sweep deleted every file
    there that no live load named (mine.parquet, x.txt; the hostile review). It deletes only the files it names
    itself (<table>/<run id>-<table>.parquet); a superseded load's file still goes."""
    store = tmp_path / "wh.duckdb.sources"
    (store / "procedures").mkdir(parents=True)
    (store / "imaging_orders").mkdir()
    (store / "procedures" / "mine.parquet").write_bytes(b"the user's")
    (store / "imaging_orders" / "x.txt").write_text("the user's\n")
    for _ in range(2):  # the second run's loads replace the first's (the same files again): its files are swept
        assert run_audit(small_input, tmp_path / "out", "--warehouse", tmp_path / "wh.duckdb").returncode == 0
    assert (store / "procedures" / "mine.parquet").read_bytes() == b"the user's"
    assert (store / "imaging_orders" / "x.txt").read_text() == "the user's\n"
    held = sorted(p.name for p in (store / "procedures").iterdir() if p.name != "mine.parquet")
    assert len(held) == 1 and held[0].endswith("-procedures.parquet"), held  # the live load's file alone
