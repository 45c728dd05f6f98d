"""The restricted re-identification crosswalk (``--reid-file``): pseudonym -> patient id, mode 0600.

The one place a raw patient id is read for output; the file must lie outside the output folder.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from pipeline import formula_guard
from pipeline.errors import ReportError


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
    fd = os.open(reid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file already existed with wider permissions
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["patient_key", "patient_id"])
        w.writerows((key, formula_guard.neutralise(patient_id)) for key, patient_id in rows)
    return reid_file
