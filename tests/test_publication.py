"""What a run publishes replaces what the run before published, and nothing else: an empty folder of the user's
stays the user's, a backfill's month folders and the folders of audits not run survive the next run, and a plain
folder does not keep the pages of an earlier month beside the new report (docs/SCHEDULING.md, Publication).

Every run is the real CLI, without the gate; the warehouse holds June 2025 (two departments' cases, one
department page each) and July 2025 (one case, one department page).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import run_cli, write_july_input, write_small_input

KEY = {"ORDER_AUDIT_PSEUDONYM_KEY": "publication-test-key"}


def run(warehouse: Path, out: Path, *period: str) -> None:
    result = run_cli("run", "--warehouse", warehouse, "--out", out, "--no-validate", "--quiet", *period, env=KEY)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """A warehouse with June's and July's extracts loaded (each run then re-audits it, no input read)."""
    base = tmp_path_factory.mktemp("publication")
    wh = base / "wh.duckdb"
    for extract, month in ((write_small_input(base / "june"), "2025-06"), (write_july_input(base / "july"), "2025-07")):
        result = run_cli("run", "--input", extract, "--warehouse", wh, "--out", base / f"out-{month}", "--no-validate",
                         "--quiet", "--month", month, env=KEY)  # fmt: skip
        assert result.returncode == 0, result.stderr
    return wh


def period_of(folder: Path) -> str:
    return json.loads((folder / "run.json").read_text(encoding="utf-8"))["period"]


def department_pages(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "departments").glob("*.html")) if (folder / "departments").is_dir() else []


def test_an_empty_folder_of_the_users_is_published_into_and_keeps_its_owner_group_and_mode(warehouse, tmp_path):
    """An empty --out (or the empty folder a user's link leads to) was removed and replaced by a link to a new folder
    of the run's: the group's setgid bit and the closed mode went with it, and the case lists became world-readable."""
    shared = tmp_path / "share" / "reports"
    shared.mkdir(parents=True)
    shared.chmod(0o2770)
    (tmp_path / "out").symlink_to(shared)
    empty = tmp_path / "empty"
    empty.mkdir()
    empty.chmod(0o2750)
    for out, folder in ((tmp_path / "out", shared), (empty, empty)):
        inode = folder.stat().st_ino
        run(warehouse, out, "--month", "2025-06")
        assert not folder.is_symlink() and folder.stat().st_ino == inode  # the same folder, not a new one
        assert stat.S_IMODE(folder.stat().st_mode) == stat.S_IMODE(0o2770 if folder == shared else 0o2750)
        assert period_of(folder / "csf_leak") == "2025-06"
    assert os.readlink(tmp_path / "out") == str(shared)  # the user's link, unchanged
    assert not [p for p in (tmp_path / "share").iterdir() if ".v-" in p.name]  # no version folder made for it


def test_a_single_month_run_after_a_backfill_keeps_the_backfills_month_folders(warehouse, tmp_path):
    """`--month` after `--from/--to` on one --out switched its link to a version without the month folders and
    removed the old version: every month the backfill had published was gone, with exit 0. A run of one audit
    dropped the other audit's folder the same way."""
    out = tmp_path / "out"
    run(warehouse, out, "--month", "2025-06")  # a new --out: a link to a version folder, switched by each run
    run(warehouse, out, "--from", "2025-06", "--to", "2025-07")  # month folders in the version --out points to
    months = {m: (out / "csf_leak" / m / "report.html").read_bytes() for m in ("2025-06", "2025-07")}
    run(warehouse, out, "--month", "2025-07")
    assert out.is_symlink()  # still all-or-nothing
    assert period_of(out / "csf_leak") == "2025-07"
    for month, report in months.items():
        assert (out / "csf_leak" / month / "report.html").read_bytes() == report
        assert period_of(out / "csf_leak" / month) == month
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="csf_leak/2025-06/' in index and 'href="csf_leak/2025-07/' in index  # the site index lists them
    lbp = (out / "low_back_pain" / "run.json").read_bytes()
    run(warehouse, out, "--month", "2025-06", "--audit", "csf_leak")
    assert (out / "low_back_pain" / "run.json").read_bytes() == lbp  # the audit not run keeps its folder
    assert period_of(out / "csf_leak") == "2025-06" and period_of(out / "csf_leak" / "2025-07") == "2025-07"
    # one version folder beside --out: the old one went, and what was carried is in the new one
    assert [p.name for p in tmp_path.iterdir() if ".v-" in p.name] == [os.readlink(out)]


def test_a_plain_folder_loses_the_earlier_months_pages_but_keeps_what_the_user_put_or_changed(warehouse, tmp_path):
    """A plain --out kept June's department pages beside July's report, named by no run.json. The pages a run
    listed and no later run publishes go; a file of the user's, or a page the user changed, stays."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's\n", encoding="utf-8")
    run(warehouse, out, "--month", "2025-06")
    june = department_pages(out / "csf_leak")
    run(warehouse, out, "--month", "2025-07")
    july = department_pages(out / "csf_leak")
    assert july and set(july) < set(june)  # June had a department July has not
    run(warehouse, out, "--month", "2025-06")
    changed = out / "csf_leak" / "departments" / sorted(set(june) - set(july))[0]
    changed.write_text(changed.read_text(encoding="utf-8") + "<!-- the reviewer's note -->\n", encoding="utf-8")
    run(warehouse, out, "--month", "2025-07")
    assert department_pages(out / "csf_leak") == sorted({*july, changed.name})
    assert (out / "notes.txt").read_text(encoding="utf-8") == "the user's\n"
    listed = json.loads((out / "csf_leak" / "run.json").read_text(encoding="utf-8"))["files"]
    assert f"departments/{changed.name}" not in listed  # July's record does not claim the kept page


def test_a_run_json_naming_files_outside_the_folder_removes_none_of_them(tmp_path):
    """The files a plain folder's earlier run.json lists are removed only inside that folder: a run.json written
    by someone else naming `../x`, an absolute path, or a file behind a link to another folder (with their true
    sha256) removes nothing of theirs."""
    from pipeline.report import outputs

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "x.txt").write_text("precious\n")
    out = tmp_path / "out"
    (out / "csf_leak").mkdir(parents=True)
    (out / "csf_leak" / "elsewhere").symlink_to(theirs)
    (out / "csf_leak" / "old.html").write_text("last month's page\n")
    listed = {
        name: {"sha256": outputs.sha256_of(theirs / "x.txt")}
        for name in ("../../theirs/x.txt", str(theirs / "x.txt"), "elsewhere/x.txt")
    }
    listed["old.html"] = {"sha256": outputs.sha256_of(out / "csf_leak" / "old.html")}
    (out / "csf_leak" / "run.json").write_text(json.dumps({"audit": {}, "files": listed}))
    staging = tmp_path / "staging"
    (staging / "csf_leak").mkdir(parents=True)
    (staging / "csf_leak" / "report.html").write_text("this month\n")
    (staging / "csf_leak" / "run.json").write_text(json.dumps({"audit": {}, "files": {"report.html": {}}}))
    assert outputs.stale_files(staging, out) == [out / "csf_leak" / "old.html"]
    assert outputs.publish(staging, out, version="20261203T000000Z-abc") == "files"
    assert (theirs / "x.txt").read_text() == "precious\n"
    assert sorted(p.name for p in (out / "csf_leak").iterdir()) == ["elsewhere", "report.html", "run.json"]
