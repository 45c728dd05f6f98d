"""The built wheel carries its SQL models, templates, suites and seeds, and runs from anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

UV = Path(sys.executable).with_name("uv")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not UV.exists():
        pytest.skip("uv is installed by `make install`; run the tests through make")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([str(UV), "build", "--wheel", "--out-dir", str(out), str(ROOT)], check=True, capture_output=True, text=True)
    (path,) = out.glob("order_audit-*.whl")
    return path


def test_wheel_contains_every_model_template_suite_seed_and_audit(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for sql in (ROOT / "sql").rglob("*.sql"):
        assert f"pipeline/_bundled/sql/{sql.relative_to(ROOT / 'sql').as_posix()}" in names
    for tpl in (ROOT / "reports").rglob("*"):
        if tpl.is_file():
            assert f"pipeline/_bundled/reports/{tpl.relative_to(ROOT / 'reports').as_posix()}" in names
    for suite in (ROOT / "expectations").glob("*.json"):
        assert f"pipeline/_bundled/expectations/{suite.name}" in names
    for path in (ROOT / "audits").rglob("*"):  # every audit folder: manifest, seeds, models, sections, deck
        if path.is_file():
            assert f"pipeline/_bundled/audits/{path.relative_to(ROOT / 'audits').as_posix()}" in names
    for seed in ("column_synonyms.csv", "value_maps.csv"):
        assert f"pipeline/reference/{seed}" in names
    for engine_file in ("models/verdicts.csv", "models/templates/int_order_verdicts.sql"):
        assert f"pipeline/{engine_file}" in names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_installed_package_runs_outside_the_checkout(wheel, small_input, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--input", str(small_input), "--out", str(out), "--no-validate", "-q"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import pipeline, sys; print(pipeline.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert probe.stdout.startswith(str(site)), "the test must exercise the wheel, not the checkout"
    assert (out / "csf_leak" / "audited_orders.csv").read_text().count("\n") == 5  # header + 4 audited orders
