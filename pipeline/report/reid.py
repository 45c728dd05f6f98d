"""The restricted re-identification crosswalk (``--reid-file``): pseudonym -> patient id, mode 0600.

The one place a raw patient id is read for output; the file must lie outside the output folder.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from pipeline import formula_guard
from pipeline.errors import ConfigError, ReportError

HEADER = "patient_key,patient_id"


def check_target(given: Path | str) -> None:
    """The crosswalk may replace only a crosswalk: a path that is a symlink (the run wrote the ids through it, to
    whatever it named, and chmod'ed that) or a file whose first line is not the crosswalk's header (a user's own
    file, replaced without a word) is refused, before any work."""
    path = Path(given)
    if path.is_symlink():
        raise ConfigError(f"--reid-file {given} is a symbolic link; give the crosswalk's own path (nothing was written)")
    if path.exists():
        with path.open("rb") as fh:
            first = fh.readline(len(HEADER) + 2).decode("utf-8", "replace").rstrip("\r\n")
        if first != HEADER:
            raise ConfigError(
                f"--reid-file {given} exists and is no crosswalk order-audit wrote (its first line is not {HEADER}); "
                "give a new path, or move the file away (nothing was written)"
            )


def write_reid_file(con, reid_file: Path, out_dir: Path, audits: list) -> Path:
    """Crosswalk patient_key -> patient_id for the case patients of every audit of the run (each
    audit's keyed patients, ``<id>__int_patient_keys``, that its cases name); owner-only (0600)."""
    reid_file = Path(reid_file)
    if reid_file.resolve().is_relative_to(out_dir.resolve()):
        raise ReportError(
            f"--reid-file {reid_file} is inside the output folder {out_dir}; the crosswalk holds "
            "raw patient ids and must be written elsewhere (e.g. a restricted folder)"
        )
    parts = [
        f"SELECT k.patient_key, k.patient_id FROM {a.model_name('int_patient_keys')} AS k "
        f"WHERE k.patient_key IN (SELECT patient_key FROM {a.model_name('mart_cases')})"
        for a in audits
    ]
    rows = con.execute(f"SELECT DISTINCT * FROM ({' UNION ALL '.join(parts)}) ORDER BY 1, 2").fetchall() if parts else []
    reid_file.parent.mkdir(parents=True, exist_ok=True)
    check_target(reid_file)  # again: the run took its time since the preflight
    # a new owner-only file beside it, renamed over it: a kill leaves the earlier crosswalk whole, and a link put
    # there meanwhile is replaced, never written through
    tmp = reid_file.with_name(f".{reid_file.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(HEADER.split(","))
            w.writerows((key, formula_guard.neutralise(patient_id)) for key, patient_id in rows)
        os.replace(tmp, reid_file)
    finally:
        tmp.unlink(missing_ok=True)
    return reid_file
