"""A locked-down host (docs/SCHEDULING.md, "The job's environment"): the job's user may read the extract and write
its warehouse and report folders, nothing more; no HOME, a TMPDIR that is missing or read-only. Root ignores file
permissions, so these commands run as uid 65534 (nobody, through setpriv) in a private mount namespace: the test's
folder (under root's own pytest folder) is seen there as /mnt/case, and the interpreter's folder under /root is made
reachable, as it is on a host where Python is installed for every user. Nothing outside the namespace changes."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, write_small_input

NOBODY = 65534
SEEN_AS = Path("/mnt/case")


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root to run a command as another user (uid 65534); as any other user no second user can be made"
    if not (shutil.which("unshare") and shutil.which("setpriv")):
        return "needs unshare and setpriv (util-linux) to run a command as uid 65534"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:  # a container without CAP_SYS_ADMIN
        return f"cannot make a mount namespace here: {probe.stderr.decode().strip()}"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")


def _reach_python() -> str:
    """Shell lines that make the interpreter's folder reachable by uid 65534 when a folder above it is not (pyenv
    under /root, mode 0700): a tmpfs over that folder, with the interpreter's folder bound back in place."""
    base = Path(os.path.realpath(sys.base_prefix))
    closed = next((p for p in reversed(base.parents) if p != Path("/") and not os.stat(p).st_mode & 0o001), None)
    if closed is None:
        return ""
    q, keep = shlex.quote, "/mnt/python"
    return (
        f"mkdir -p {keep} && mount --bind {q(str(base))} {keep} && mount -t tmpfs -o mode=755 none {q(str(closed))} && "
        f"mkdir -p {q(str(base))} && mount --bind {keep} {q(str(base))} && "
    )


def as_nobody(case: Path, *args, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`python -m pipeline ARGS` as uid 65534 with only ``env`` (and PATH), from the repository (a folder it cannot
    write); ``case`` is /mnt/case there."""
    script = (
        "mount -t tmpfs -o mode=755 none /mnt && "
        + _reach_python()
        + f"mkdir -p {SEEN_AS} && mount --bind {shlex.quote(str(case))} {SEEN_AS} && "
        + f'cd {shlex.quote(str(ROOT))} && exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups "$@"'
    )
    command = ["env", "-i", "PATH=/usr/bin:/bin", *(f"{k}={v}" for k, v in env.items())]
    command += [sys.executable, "-m", "pipeline", *map(str, args)]
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *command], capture_output=True, text=True, timeout=600)


@pytest.fixture
def case(tmp_path):
    """A read-only extract (root's, as a data owner's share is), a folder the job's user owns, and one it cannot
    write, all seen as /mnt/case."""
    inp = write_small_input(tmp_path / "in")
    for path in (*inp.iterdir(), inp):
        path.chmod(0o555 if path.is_dir() else 0o444)
    (tmp_path / "mine").mkdir()
    os.chown(tmp_path / "mine", NOBODY, NOBODY)
    (tmp_path / "theirs").mkdir(mode=0o755)
    (tmp_path / "home").mkdir(mode=0o755)  # a HOME the job's user cannot write
    tmp_path.chmod(0o755)
    return tmp_path


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize(
    "env",
    [
        {"TMPDIR": f"{SEEN_AS}/no-such-folder"},  # no HOME at all, a TMPDIR that does not exist
        {"HOME": f"{SEEN_AS}/home", "TMPDIR": f"{SEEN_AS}/theirs"},  # both read-only
    ],
    ids=["no-home-missing-tmpdir", "read-only-home-and-tmpdir"],
)
def test_a_user_who_may_only_read_the_extract_runs_validates_and_inspects_it(case, env):
    before = _snapshot(case / "in")
    mine = SEEN_AS / "mine"
    ran = as_nobody(
        case, "run", "--input", SEEN_AS / "in", "--warehouse", mine / "wh.duckdb", "--out", mine / "out", "--month", "2025-06",
        env={"ORDER_AUDIT_PSEUDONYM_KEY": "locked-down-key", **env},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr
    assert (case / "mine" / "out" / "csf_leak" / "report.html").is_file()
    assert (case / "mine" / "out").stat().st_uid == NOBODY
    for command in (("validate", "--input", SEEN_AS / "in"), ("inspect", "--input", SEEN_AS / "in")):
        result = as_nobody(case, *command, env=env)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    listed = as_nobody(case, "runs", "--warehouse", mine / "wh.duckdb", env=env)
    assert listed.returncode == 0 and "succeeded" in listed.stdout, listed.stderr
    assert _snapshot(case / "in") == before  # read, never written (nor touched)
    assert sorted(p.name for p in (case / "theirs").iterdir()) == []
    assert sorted(p.name for p in (case / "home").iterdir()) == []


@pytest.mark.parametrize("option", ["--out", "--warehouse"])
def test_an_output_or_warehouse_in_a_folder_the_user_cannot_write_is_one_line_and_exit_1(case, option):
    mine, theirs = SEEN_AS / "mine", SEEN_AS / "theirs"
    paths = {"--out": mine / "out", "--warehouse": mine / "wh.duckdb"}
    paths[option] = theirs / ("out" if option == "--out" else "wh.duckdb")
    result = as_nobody(
        case, "run", "--input", SEEN_AS / "in", *(x for o, p in paths.items() for x in (o, p)), "--month", "2025-06",
        env={"ORDER_AUDIT_PSEUDONYM_KEY": "locked-down-key"},
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"order-audit: error: {option} {paths[option]}: cannot write in {theirs} (no permission to write there); "
        "choose another path or fix the folder\n"
    )
    assert sorted(p.name for p in (case / "theirs").iterdir()) == []
    assert sorted(p.name for p in (case / "mine").iterdir()) == []  # nothing half-made beside the other path
