"""The README is the user's manual: it opens with the two set-up commands and its rule table is the registry."""

from __future__ import annotations

import pytest
from conftest import ROOT, run_cli

from pipeline.registry import END, START, rules, rules_markdown

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_two_setup_commands():
    block = README.split("```", 2)[1].strip().splitlines()
    assert [line.split("#")[0].strip() for line in block] == ["make demo", "make test"]


def test_readme_rule_table_is_generated_from_the_registry():
    current = README[README.index(START) : README.index(END) + len(END)]
    assert current == rules_markdown(), "run: python -m pipeline.registry, and paste the table into README.md"
    assert rules().height == 18


@pytest.mark.parametrize("command", ["run", "validate", "runs", "diff", "synth"])
def test_every_command_documents_itself(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout, result.stderr
