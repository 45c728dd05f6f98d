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


def test_one_out_holds_one_layout_a_backfills_months_or_one_periods_reports(warehouse, tmp_path):
    """`--month` after `--from/--to` on one --out switched its link to a version without the month folders and
    removed the old version: every month the backfill had published was gone, with exit 0. The other way, a
    backfill wrote its months among one period's files and its feed over theirs. Each is refused before any work."""
    for first, then, held in (
        (("--month", "2025-06"), ("--from", "2025-06", "--to", "2025-07"), "one period's reports"),
        (("--from", "2025-06", "--to", "2025-07"), ("--month", "2025-07"), "a backfill's month folders"),
    ):
        out = tmp_path / first[0].strip("-")
        run(warehouse, out, *first)
        before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
        result = run_cli("run", "--warehouse", warehouse, "--out", out, "--no-validate", "--quiet", *then, env=KEY)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        line = result.stderr.strip().splitlines()[-1]
        assert f"--out {out} holds {held} in csf_leak/" in line and "nothing was changed" in line, line
        assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def test_a_switch_keeps_what_the_run_does_not_publish_as_a_plain_folder_does(warehouse, tmp_path):
    """A new --out is a link switched to each run's version folder, and the old version is removed: a file the
    user put there (an .htaccess, notes, a link), a folder of theirs (its group and closed mode), a page they changed,
    and the folder of an audit the run did not run went with it. They are carried into the new version (the site
    index lists the audit), and only the run before's own files it does not write again are left behind."""
    out = tmp_path / "out"
    run(warehouse, out, "--month", "2025-06")
    june = department_pages(out / "csf_leak")
    (out / ".htaccess").write_text("Require all denied\n")
    (out / "csf_leak" / "notes.txt").write_text("the user's\n")
    (out / "csf_leak" / "extracts").symlink_to(tmp_path)
    private = out / "private"
    private.mkdir()
    (private / "secret.txt").write_text("s\n")
    private.chmod(0o2750)
    run(warehouse, out, "--month", "2025-07")
    july = department_pages(out / "csf_leak")
    assert july and set(july) < set(june)  # June had a department July has not
    assert (out / ".htaccess").read_text() == "Require all denied\n"
    assert (out / "csf_leak" / "notes.txt").read_text() == "the user's\n"
    assert os.readlink(out / "csf_leak" / "extracts") == str(tmp_path)
    assert stat.S_IMODE((out / "private").stat().st_mode) == 0o2750 and (out / "private" / "secret.txt").is_file()
    run(warehouse, out, "--month", "2025-06")
    changed = out / "csf_leak" / "departments" / sorted(set(june) - set(july))[0]
    changed.write_text(changed.read_text(encoding="utf-8") + "<!-- the reviewer's note -->\n", encoding="utf-8")
    lbp = (out / "low_back_pain" / "run.json").read_bytes()
    run(warehouse, out, "--month", "2025-07", "--audit", "csf_leak")
    assert out.is_symlink()  # still all-or-nothing
    assert department_pages(out / "csf_leak") == sorted({*july, changed.name})  # June's own pages went
    assert (out / "low_back_pain" / "run.json").read_bytes() == lbp  # the audit not run keeps its folder
    assert 'href="low_back_pain/index.html"' in (out / "index.html").read_text(encoding="utf-8")
    assert period_of(out / "csf_leak") == "2025-07"
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


def test_a_plain_folder_killed_while_its_files_move_in_loses_them_on_the_next_run(warehouse, tmp_path):
    """A run killed while it moved its files into a plain folder left June's department pages beside July's report
    after the next run: no run.json had listed them. The record of the files being moved in names them."""
    out = tmp_path / "out"
    out.mkdir()
    run(warehouse, out, "--month", "2025-07")
    july = department_pages(out / "csf_leak")
    killed = run_cli(
        "run", "--warehouse", warehouse, "--out", out, "--no-validate", "--quiet", "--month", "2025-06",
        env={**KEY, "ORDER_AUDIT_FAULT": "mid_publish:9"},
    )  # fmt: skip
    assert killed.returncode != 0
    assert set(department_pages(out / "csf_leak")) > set(july)  # some of June's pages are in
    run(warehouse, out, "--month", "2025-07")
    assert department_pages(out / "csf_leak") == july
    assert not (out / ".order-audit-publishing.json").exists()


def test_a_plain_folders_site_index_lists_the_audit_the_run_did_not_run(warehouse, tmp_path):
    """In a plain --out the folder of an audit not run stays where it is; the index, made beside, had dropped it."""
    out = tmp_path / "out"
    out.mkdir()
    run(warehouse, out, "--month", "2025-06")
    run(warehouse, out, "--month", "2025-07", "--audit", "csf_leak")
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="low_back_pain/index.html"' in index and 'href="csf_leak/index.html"' in index
    assert period_of(out / "low_back_pain") == "2025-06" and period_of(out / "csf_leak") == "2025-07"
