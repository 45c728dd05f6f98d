"""The site index of a backfill: ``OUT/index.html`` over the month folders and their headline rates."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pipeline.months import MONTH
from pipeline.report import sections
from pipeline.report.feed import SCHEMA_VERSION
from pipeline.report.templates import make_env

SITE_INDEX_TEMPLATE = "site_index.html"
SITE_MEASURES = ("inappropriate_order_rate", "first_imaging_right_study")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def render_site_index(out_root: Path, pending: dict[str, dict] | None = None, low: int = 20) -> Path:
    """Write ``out_root/index.html`` listing every month folder (``YYYY-MM/index.html``) present.

    For a backfill (``--from/--to``, one folder per month under ``--out``). Call it after each month
    is published, or once after all; it is cheap (reads each month's ``run.json``) and idempotent.
    ``pending`` maps a month to ``{"folder": staging folder, "run": its run_info}`` (listed although not
    yet published). The page is written to a temporary file and renamed into place.
    """
    out_root = Path(out_root)
    found: dict[str, tuple[Path, dict]] = {}
    if out_root.is_dir():
        for entry in out_root.iterdir():
            if MONTH.match(entry.name) and (entry / "index.html").is_file():
                found[entry.name] = (entry, _read_json(entry / "run.json"))
    for month, item in (pending or {}).items():
        found[month] = (Path(item["folder"]), item["run"])
    months = []
    for month in sorted(found, reverse=True):
        folder, info = found[month]
        head = {r.get("measure_id"): sections.marked(r, low) for r in info.get("headline", [])}
        departments = sorted(p.name for p in (folder / "departments").glob("*.html")) if (folder / "departments").is_dir() else []
        months.append(
            {
                "month": month,
                "run_id": info.get("run_id", ""),
                "pdf": (folder / "report.pdf").is_file(),
                "n_departments": len(departments),
                **{m: head.get(m) for m in SITE_MEASURES},
            }
        )
    html = make_env().get_template(SITE_INDEX_TEMPLATE).render(months=months, schema_version=SCHEMA_VERSION, low=low)
    target = out_root / "index.html"
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = out_root / f".index.html.tmp-{os.getpid()}"
    tmp.write_text(html, encoding="utf-8", newline="\n")
    os.replace(tmp, target)
    return target
