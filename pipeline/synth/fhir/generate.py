"""``order-audit synth --format fhir``: the synthetic extract as a FHIR R4 Bulk Data export.

The generator writes its CSV extract into a scratch folder; the writer turns it into NDJSON
files and their manifest.json (as a Bulk Data client saves it); the ground truth, the summary and
the site's code map (its local codes now named by their FHIR code system URI) come along
unchanged, so the same truth checks the FHIR reading.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from pipeline import synth
from pipeline.config import load_config
from pipeline.synth.fhir import writer

CARRIED = "ground_truth*.csv"  # the truth files of the scenarios inside the population
TRUTH_DIR = "ground_truth"


def generate(
    out_dir: Path,
    patients: int,
    months: int,
    seed: int,
    start_month: str = "2024-01",
    fmt: str = "fhir",
    site_timezone: str = "America/New_York",
    case_density: float = 1.0,
    lines_per_file: int = writer.LINES_PER_FILE,
) -> dict:
    """Write the export with its ground truth into out_dir; return the generator's summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".synth-extract-", dir=out_dir) as tmp:
        extract = Path(tmp)
        summary = synth.generate(
            extract,
            patients=patients,
            months=months,
            seed=seed,
            start_month=start_month,
            fmt="csv",
            site_timezone=site_timezone,
            case_density=case_density,
        )
        cfg = load_config(site_timezone=site_timezone)
        # the NDJSON files are written beside the extract and moved into out_dir once all are complete: a
        # writer that stops (out of memory, disk full) leaves no half-written export behind
        export = extract / "export"
        written = writer.write_bulk_export(extract, export, cfg, lines_per_file=lines_per_file, manifest=True)
        for path in sorted(export.iterdir()):
            os.replace(path, out_dir / path.name)
        for path in sorted(extract.glob(CARRIED)):
            shutil.copyfile(path, out_dir / path.name)
        if (extract / TRUTH_DIR).is_dir():  # the audits' scenario truth, one folder per audit
            shutil.copytree(extract / TRUTH_DIR, out_dir / TRUTH_DIR, dirs_exist_ok=True)
        writer.local_map_with_uri(extract / "local_code_map.csv", out_dir / "local_code_map.csv")
    summary["parameters"]["format"] = fmt
    summary["fhir_resources"] = written
    (out_dir / "synth.json").write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return summary
