"""What order-audit made, and so may delete: every folder it removes carries its mark.

A run deletes folders only it could have made: staging folders beside ``--out``, scratch
folders beside the warehouse, and published version folders (``.out.v-<run>.<pid>``). A
name that merely looks like one is not enough (``--out`` may be a link to a user's folder,
a user may keep a folder of that shape): staging and scratch folders hold the file
``MARK`` from the moment they are made; a version folder is a staging folder renamed, so
its mark is the ``run.json`` this tool wrote into it, naming the run in the folder's name.
Anything else is left alone and logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

MARK = ".order-audit-made"
_MARK_TEXT = "made by order-audit; removed by order-audit when no longer needed\n"


def mark(folder: Path) -> Path:
    (Path(folder) / MARK).write_text(_MARK_TEXT, encoding="utf-8")
    return Path(folder)


def make_dir(path: Path) -> Path:
    """A new folder (it must not exist yet) with the mark in it."""
    path = Path(path)
    path.mkdir()
    return _marked(path)


def make_temp_dir(prefix: str, parent: Path) -> Path:
    """A new uniquely named folder in ``parent`` with the mark in it (tempfile.mkdtemp)."""
    return _marked(Path(tempfile.mkdtemp(prefix=prefix, dir=parent)))


def _marked(folder: Path) -> Path:
    """``folder``, just made, with its mark; removed again when the mark cannot be written (a full disk): a
    staging folder holding an empty mark was left beside --out (the scheduling review)."""
    try:
        return mark(folder)
    except BaseException:
        _remove_tree(folder, last=(MARK,))
        raise


HELD = ".order-audit-held"  # in a folder of the system's temporary folder: flock'd by the process using it
TEMP_PREFIX = "order-audit-"  # every held_temp_dir's name starts so


@contextlib.contextmanager
def held_temp_dir(prefix: str):
    """A marked folder in the system's temporary folder (TMPDIR) for this process's scratch, removed when the
    block ends. A process killed with SIGKILL (the OOM killer) removes nothing, and nightly runs would pile up
    its folders (a throw-away warehouse holds the parsed extracts, a browser's profile 2 MB): the folder holds a
    file flock'd while in use, so the next command that makes one removes every such folder whose lock is free,
    whatever command left it (a --pdf run's browser profile is removed by the next `validate` too)."""
    if not prefix.startswith(TEMP_PREFIX):
        raise ValueError(f"a held temporary folder's name starts with {TEMP_PREFIX!r}: {prefix!r}")
    root = Path(tempfile.gettempdir())
    for old in sorted(root.glob(f"{TEMP_PREFIX}*")):
        if _left_by_dead_process(old):
            _remove_tree(old, last=(HELD, MARK))
            log.info("removed %s (left by a killed order-audit process)", old)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    fd = os.open(folder / HELD, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # before the mark: a marked folder's lock is held until its process ends
        mark(folder)
        yield folder
    finally:
        os.close(fd)
        _remove_tree(folder, last=(HELD, MARK))


def _remove_tree(folder: Path, last: tuple[str, ...]) -> None:
    """Delete ``folder``, the files named ``last`` after everything else, in that order. A SIGTERM in the middle of
    removing a folder (a scheduler's stop as the run ends) had deleted its mark among the first files: a throw-away
    warehouse of raw patient ids left in the temporary folder that no later run would remove, or a scratch folder
    that every later run warned of as "not made by order-audit". The mark goes last, so what is left of a folder
    is still known as order-audit's, and the next run removes it."""
    with contextlib.suppress(OSError):
        for child in os.scandir(folder):
            if child.name in last:
                continue
            if child.is_dir(follow_symlinks=False):
                shutil.rmtree(child.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(child.path)
    for name in last:
        if os.path.lexists(folder / name):
            with contextlib.suppress(OSError):
                os.unlink(folder / name)
    shutil.rmtree(folder, ignore_errors=True)  # nothing left but what appeared meanwhile


def _left_by_dead_process(folder: Path) -> bool:
    """A temporary folder ``held_temp_dir`` made (marked, this user's) whose process is gone (its flock free, or its
    lock file already removed: a removal stopped part-way, ``_remove_tree``)."""
    try:
        if not is_marked(folder) or folder.stat().st_uid != os.getuid():
            return False
        fd = os.open(folder / HELD, os.O_RDONLY)
    except FileNotFoundError:
        return is_marked(folder)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held: a command running now
        return False
    finally:
        os.close(fd)
    return True


def is_marked(folder: Path) -> bool:
    folder = Path(folder)
    return not folder.is_symlink() and folder.is_dir() and (folder / MARK).is_file()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine exists (and is not this one: a pid of ours in a name or a lock
    file is from an earlier life of the number, as this process is only starting or only reading)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_record(path: Path) -> dict | None:
    """The run.json at ``path`` when order-audit wrote it (a JSON object naming its run and software version)."""
    try:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "run_id" in info and "software_version" in info else None


def is_version_of(folder: Path, run_id: str) -> bool:
    """A real folder holding the run.json order-audit wrote for ``run_id``."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return False
    info = run_record(folder / "run.json")
    return info is not None and info["run_id"] == run_id


def remove(folder: Path, run_id: str | None = None) -> bool:
    """Delete ``folder`` if order-audit made it: it has the mark, or (``run_id`` given) it is that
    run's published version. Returns whether it is gone; anything else is left and logged."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return True
    if is_marked(folder) or (run_id is not None and is_version_of(folder, run_id)):
        # the marks last (a version folder's is its run.json, a staging folder's MARK): a removal stopped part-way
        # leaves a folder still ours
        _remove_tree(folder, last=("run.json", MARK))
        return not folder.exists()
    log.warning("left %s in place: it was not made by order-audit", folder)
    return False
