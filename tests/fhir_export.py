"""Test inputs as a FHIR Bulk Data export: the canonical extract written by pipeline.synth.fhir.writer.

Several files per type (as `$export` writes them), one of them gzip-compressed and one named
the way bulk-data clients name their downloads (``1.Patient.ndjson``), so the reading of a
real export folder is what the tests exercise. The site's local code map names the local
exam codes by the FHIR code system URI the export uses for them.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from pipeline.config import load_config
from pipeline.synth.fhir.writer import local_map_with_uri, write_bulk_export


def export_extract(
    extract_dir: Path, out: Path, lines_per_file: int = 25, site_timezone: str = "America/New_York", variety: bool = True
) -> dict:
    """Write the extract in extract_dir as an export in out; returns the resources written per type.

    variety: compress ServiceRequest.001 and name Patient.000 as a client names its download."""
    written = write_bulk_export(extract_dir, out, load_config(site_timezone=site_timezone), lines_per_file=lines_per_file)
    if (extract_dir / "local_code_map.csv").is_file():
        local_map_with_uri(extract_dir / "local_code_map.csv", out / "local_code_map.csv")
    if not variety:
        return written
    second = out / "ServiceRequest.001.ndjson"
    if second.is_file():  # one file compressed, as servers may serve them
        with second.open("rb") as src, gzip.open(out / "ServiceRequest.001.ndjson.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        second.unlink()
    first_patients = out / "Patient.000.ndjson"
    if first_patients.is_file():  # a bulk-data client's download name
        first_patients.rename(out / "1.Patient.ndjson")
    return written
