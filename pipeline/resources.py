"""Where the bundled SQL models, templates, suites and reference seeds live.

From a source checkout (editable install) they sit beside the package; a built
wheel carries them under pipeline/_bundled (see pyproject force-include).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REFERENCE_DIR = PACKAGE_DIR / "reference"


def _bundled(name: str) -> Path:
    for candidate in (PACKAGE_DIR / "_bundled" / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"order-audit installation is missing its '{name}' folder")


def sql_dir() -> Path:
    return _bundled("sql")


def reports_dir() -> Path:
    return _bundled("reports")


def expectations_dir() -> Path:
    return _bundled("expectations")


def audits_dir() -> Path:
    """The shipped audit folders (audits/<id>/): more come from the config's audits_path."""
    return _bundled("audits")
