"""`order-audit synth --format fhir` writes within a small DuckDB memory limit, and the same bytes it always wrote.

The writer once built every line of a resource type in one table (and ranked the lines in one
window) before writing it: 100k orders needed more than 128 MB, 10M ran out at 4 GB. It now
sorts each file's narrow rows and builds the lines as DuckDB writes them. The digests are the
files that writer wrote for this extract under the default limit (a change to the generator
moves them, as it moves tests/test_synth_pinned.py's).
"""

from __future__ import annotations

import hashlib

import pytest
from conftest import run_cli

# ~100k orders; the writer before the change failed under this limit, the files are ~90 MB
SYNTH_ARGS = ("--patients", "20000", "--months", "12", "--seed", "11", "--start", "2025-01", "--format", "fhir")
MEMORY_LIMIT = "100MB"
PINNED = {
    "Condition.000.ndjson": "2db09e409b18aadf1b63b04dd4fbc77d3343e12cdd7968ead3d1024c55614f3c",
    "Encounter.000.ndjson": "81d8fa06d4583016528e0eec8aa285b3b3f65d9f1c0217deba2338b5b1eb75d1",
    "Location.000.ndjson": "5e5889e6b177f980f7781436dd1a36b7b21ba19b93c4dc5a1a791ee9a33b6eb5",
    "Patient.000.ndjson": "635219308412612d8d7c7af8e4e3d82e250fbae55932fb6d6a12ca51c9eb7289",
    "Practitioner.000.ndjson": "8511412e4366e982cf7815e50828366ec5b443c89e7b3e0f1a008a6ec8cf981d",
    "Procedure.000.ndjson": "c62aa7fea91bbaac25fe9e723d6b191000747d10bf587218a4ba144503193f10",
    "ServiceRequest.000.ndjson": "d801d10778a44a41eedc5e46638cb3d825d76607be19a785c44e177a23ffe0b6",
}


@pytest.mark.slow
def test_the_export_is_written_within_a_small_memory_limit_with_the_same_bytes(tmp_path):
    out = tmp_path / "export"
    result = run_cli("synth", *SYNTH_ARGS, "--out", out, env={"ORDER_AUDIT_MEMORY_LIMIT": MEMORY_LIMIT})
    assert result.returncode == 0, result.stderr
    written = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.ndjson"))}
    assert written == PINNED


def test_a_writer_out_of_memory_is_one_line_and_leaves_no_half_written_export(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "mine.txt").write_text("the user's", encoding="utf-8")
    small = ("--patients", "2000", "--months", "6", "--seed", "3", "--start", "2025-01", "--format", "fhir")
    result = run_cli("synth", *small, "--out", out, env={"ORDER_AUDIT_MEMORY_LIMIT": "4MB"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("order-audit: error: DuckDB ran out of memory within its limit of 4MB")
    assert "ORDER_AUDIT_MEMORY_LIMIT" in last
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]  # no NDJSON file, no scratch folder left
