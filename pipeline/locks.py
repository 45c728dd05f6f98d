"""The locks a run holds for its whole length: a file beside what it writes, flock'd and naming the holder.

The kernel drops an flock when its process dies, even on SIGKILL: there is never a stale lock to remove.
The file keeps the holder's run id, process id, host, command and start time, so that the run refused
(exit 4) can name it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import ConfigError, WarehouseLockedError, WriteRefusedError


def describe(holder: dict) -> str:
    """The run a lock file names, as a refusal says it."""
    return (
        f"run {holder.get('run_id', '?')} (process {holder.get('pid', '?')}, "
        f"'{holder.get('command', '?')}', started {holder.get('started_at', '?')})"
    )


_REOPENS = 10  # how often a lock file removed under this run as it took it is opened again (``_lock``)


@contextlib.contextmanager
def held(lock_path: Path, guarded: Path, run_id: str, command: str, option: str, refusal: Callable[[dict], str], **about):
    """Hold ``lock_path`` until the block ends, or stop at once (exit 4) with ``refusal(holder)`` when another
    process holds it. ``guarded``: what the lock guards (the warehouse, the --out folder); ``option``: the option
    naming it (named when the file cannot be made); ``about``: more of the holder written into the file. The block
    gets whether this call made the lock file.

    A lock file this call made is removed as the block ends when ``guarded`` was never made (a run refused by
    the next lock, a disk full before the warehouse): nothing is left beside a path the user gave that holds
    nothing. It is removed while still held, so a run that opened it meanwhile is refused, or locks it only as
    this one ends and then opens the path again (``_lock``), and one after makes its own; a lock file found
    there, or beside what the run made, stays (it is reused, never a stale lock)."""
    lock_path, guarded = Path(lock_path), Path(guarded)
    made, fd = _lock(lock_path, option, refusal)
    try:
        try:
            _record_holder(fd, lock_path, option, run_id, command, about)
            yield made
        finally:
            if made and not guarded.exists():
                lock_path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _lock(lock_path: Path, option: str, refusal: Callable[[dict], str]) -> tuple[bool, int]:
    """(whether this call made the lock file, its descriptor, flock'd), or stop (exit 4) naming its holder. A file
    opened as its holder removed it (``held``) is locked only once that holder ends, and then no longer at the path:
    a run after would make and lock another, and both write. The path is opened again until the file locked is the
    one there (a few times: a file system whose stat and fstat disagree on the inode must not hang the run)."""
    for _ in range(_REOPENS):
        made, fd = _open_locked(lock_path, option, refusal)
        if _is_at(fd, lock_path):
            return made, fd
        os.close(fd)
    return _open_locked(lock_path, option, refusal)


def _open_locked(lock_path: Path, option: str, refusal: Callable[[dict], str]) -> tuple[bool, int]:
    """``lock_path`` opened (made if need be: whether it was, and its descriptor) and flock'd, or stop (exit 4)."""
    made = not os.path.lexists(lock_path)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        # held for the whole run; the umask applies. Not through a link: the holder is written over what it names
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as exc:  # a read-only or foreign folder (preflight checks it first; this is the race)
        if os.path.islink(lock_path):
            raise ConfigError(_not_a_lock(lock_path, option, "a symbolic link")) from None
        raise ConfigError(f"{option}: cannot create its lock file {lock_path} ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise WarehouseLockedError(refusal(holder or {})) from None
    if not made and not _written_by_a_run(fd):
        os.close(fd)
        raise ConfigError(_not_a_lock(lock_path, option, "a file order-audit did not write"))
    return made, fd


def _holder(fd: int) -> dict | None:
    """The run a lock file names (None: the file holds no such record)."""
    try:
        holder = json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _written_by_a_run(fd: int) -> bool:
    """Whether a lock file found at the path is one a run wrote: a regular file, empty (a run stopped as it made it)
    or naming its holder. A user's file of that name (notes beside the warehouse, wh.duckdb.lock) was emptied and
    written over: the lock is order-audit's by its name alone."""
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode):
        return False
    if found.st_size == 0:
        return True
    holder = _holder(fd)
    return holder is not None and {"run_id", "pid"} <= holder.keys()


def _not_a_lock(lock_path: Path, option: str, what: str) -> str:
    return (
        f"{option}: {lock_path} is {what}, where order-audit keeps its lock file; nothing was changed: move it "
        "away (order-audit makes its own), or choose another path"
    )


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is still the one at ``path`` (not removed, nor replaced)."""
    try:
        here = os.stat(path)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (here.st_dev, here.st_ino)


def _record_holder(fd: int, lock_path: Path, option: str, run_id: str, command: str, about: dict) -> None:
    """Write the holder (its run, process, host, command, start time and ``about``) into the lock file it holds."""
    record = {
        "run_id": run_id,
        "pid": os.getpid(),
        "host": socket.gethostname(),  # a pid names a process of this machine only (``run_is_gone``)
        "command": command,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **about,
    }
    try:  # unbuffered: a full disk fails here, in words, not later as the file closes
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
    except OSError as exc:
        raise WriteRefusedError(
            f"{option}: could not write its lock file {lock_path} ({exc.strerror}); nothing was changed: free "
            "space or fix the folder, then run again"
        ) from None
