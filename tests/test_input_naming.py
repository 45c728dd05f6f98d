"""Every command names an input file as a run does: relative to --input (``inputs.named_within``).

`run` named its inputs relative to --input; `validate` and `inspect` printed their absolute paths, and so did a
run's own error for a file it could not read: the folder's path (which may hold a person's name) reached the
terminal and the scheduler's log, and the same extract in another folder printed other words.
"""

from __future__ import annotations

import json
import shutil

from conftest import run_cli, write_small_input

UNCLOSED = 'O9,"MRN-9,2025-06-06\n'  # a quoted field that opens on line 6 and never closes
UNKNOWN_STATUS = "O9,MRN-9,2025-06-06 10:00:00,72148,Emergency,,On Hold\n"
CSV_FIX = "Fix or re-export the extract as UTF-8 CSV"


def _in_two_folders(tmp_path, extra_line: str) -> list:
    """The small extract with one more order line, copied to two folders (one named for a patient)."""
    source = write_small_input(tmp_path / "source")
    with (source / "imaging_orders.csv").open("a", encoding="utf-8") as fh:
        fh.write(extra_line)
    folders = [tmp_path / "Jane Doe MRN 4711" / "extract", tmp_path / "b" / "c"]
    for folder in folders:
        shutil.copytree(source, folder)
    return folders


def test_a_file_the_parse_cannot_read_is_named_alike_by_run_validate_and_inspect(tmp_path):
    """The run's own error named the file by its absolute path (the readers raise with the path they opened);
    validate did too; inspect stopped with a Polars traceback."""
    expected = (
        "order-audit: error: imaging_orders.csv, line 6: cannot be read as CSV: a quoted field opens on this line and is "
        f"never closed. {CSV_FIX}"
    )
    for i, folder in enumerate(_in_two_folders(tmp_path, UNCLOSED)):
        r = run_cli("run", "--input", folder, "--out", tmp_path / f"out{i}", "--no-validate")
        assert (r.returncode, r.stderr.splitlines()[-1]) == (2, expected), r.stderr
        r = run_cli("validate", "--input", folder)
        assert (r.returncode, r.stderr.splitlines()[-1]) == (2, expected), r.stderr
        assert str(tmp_path) not in r.stdout + r.stderr
        r = run_cli("inspect", "--input", folder)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert r.stdout.splitlines()[23:25] == [
            "imaging_orders: imaging_orders.csv (found by name), 0 rows",
            f"  PROBLEM    {expected.removeprefix('order-audit: error: ')}",
        ], r.stdout
        assert r.stdout.splitlines()[0] == f"order-audit inspect: {folder}"  # the folder the user named, once
        assert str(tmp_path) not in "\n".join(r.stdout.splitlines()[1:])
        found = json.loads(run_cli("inspect", "--input", folder, "--json").stdout)
        assert {t: v["file"] for t, v in found.items()} == {
            "procedures": "procedures.csv",
            "imaging_orders": "imaging_orders.csv",
            "diagnoses": "diagnoses.csv",
            "patients": None,
        }
        assert found["imaging_orders"]["problems"] == [expected.removeprefix("order-audit: error: ")]


def test_validate_and_inspect_print_the_same_bytes_from_any_folder(tmp_path):
    """validate's unknown-value line, its JSON results, inspect's text, JSON and starter config: the same from
    the patient-named folder and from another, naming no folder (inspect's first line names the one given)."""
    printed = []
    for i, folder in enumerate(_in_two_folders(tmp_path, UNKNOWN_STATUS)):
        r = run_cli("validate", "--input", folder)
        assert r.returncode == 0, r.stderr
        [unknown] = [line for line in r.stderr.splitlines() if "no map knows" in line]
        assert unknown.startswith("order-audit: imaging_orders.csv: imaging_orders.status: no map knows 'On Hold' (1 row)")
        as_json = run_cli("validate", "--input", folder, "--json")
        text = run_cli("inspect", "--input", folder)
        found = run_cli("inspect", "--input", folder, "--json")
        config = tmp_path / f"site{i}.toml"
        wrote = run_cli("inspect", "--input", folder, "--write-config", config)
        assert wrote.returncode == 0, wrote.stderr
        outputs = [r.stdout, r.stderr, as_json.stdout, text.stdout.split("\n", 1)[1], found.stdout, config.read_text()]
        assert not any(str(tmp_path) in o for o in outputs)
        printed.append(outputs)
    assert printed[0] == printed[1]
    first_line = "# order-audit starter config, written by `order-audit inspect` from the extract's files."
    assert printed[0][5].splitlines()[0] == first_line
