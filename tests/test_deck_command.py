"""`order-audit deck`: an audit author outside this repository runs their audit's deck (deck/*.toml) through the
real pipeline, as tests/test_decks.py runs the shipped ones (both through pipeline/deck.py). The toy audit
(tests/toy_audit, found through the config's audits_path) stands for the author's own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "toy_audit"


def _toy_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the toy audit in the author's own folder, and a config whose audits_path finds it."""
    audits = tmp_path / "my_audits"
    shutil.copytree(TOY, audits / "toy_audit")
    config = tmp_path / "site.toml"
    config.write_text('audits_path = ["my_audits"]\n', encoding="utf-8")  # relative to the config, as an author writes it
    return audits / "toy_audit", config


def test_a_deck_that_agrees_exits_0_with_its_summary(tmp_path):
    config = tmp_path / "site.toml"
    config.write_text(f"audits_path = [{json.dumps(str(TOY))}]\n", encoding="utf-8")
    r = run_cli("deck", "--audit", "toy_audit", "--config", config)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["deck: 3 cases, 4 orders, 0 mismatches"]
    assert "Traceback" not in r.stderr and "demo key" not in r.stderr


def test_a_wrong_expected_verdict_is_one_line_naming_file_order_and_field_and_exits_1(tmp_path):
    toy, config = _toy_copy(tmp_path)
    deck_file = toy / "deck" / "contrast.toml"
    text = deck_file.read_text(encoding="utf-8")
    wrong = 'order_id = "toy-or-1"\ncase_id = "toy-or-1"\nverdict = "inappropriate"'
    assert wrong in text
    deck_file.write_text(text.replace(wrong, wrong.replace('"inappropriate"', '"appropriate"')), encoding="utf-8")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    # a real process with its own temporary folder: the deck's runs are made there and removed
    r = run_cli("deck", "--config", config, "--audit", "toy_audit", env={"TMPDIR": str(scratch)})
    assert r.returncode == 1, r.stderr
    assert r.stdout.splitlines() == [
        f"{deck_file}: toy_audit: order toy-or-1 (case toy-or-1) verdict: expected 'appropriate', found 'inappropriate'",
        "deck: 3 cases, 4 orders, 1 mismatch",
    ]
    assert r.stderr.splitlines()[-1].startswith("order-audit: error: the deck disagrees with its audit (1 mismatch above)")
    assert "Traceback" not in r.stderr
    assert not [p for p in scratch.iterdir() if p.name.startswith("order-audit-deck-")], "the deck's runs were left behind"
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "the deck wrote beside the user's files"


def test_a_broken_deck_file_is_one_line_naming_the_file_and_line(tmp_path):
    toy, config = _toy_copy(tmp_path)
    broken = toy / "deck" / "broken.toml"
    broken.write_text('description = "x"\n[[imaging_orders]\norder_id = "a"\n', encoding="utf-8")
    r = run_cli("deck", "--config", config, "--audit", "toy_audit")
    assert r.returncode == 1
    assert r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"order-audit: error: {broken}: not valid TOML: "), line
    assert "(at line 2, column 17)" in line and "fix the file" in line, line


def test_an_expected_order_without_its_id_is_one_line(tmp_path):
    toy, config = _toy_copy(tmp_path)
    (toy / "deck" / "no_id.toml").write_text('description = "x"\n[[expected_orders]]\nverdict = "appropriate"\n', "utf-8")
    r = run_cli("deck", "--config", config, "--audit", "toy_audit")
    assert r.returncode == 1
    (line,) = r.stderr.splitlines()
    assert "no_id.toml: [[expected_orders]] number 1 has no order_id" in line, line
