"""The README is the user's manual: it opens with the two set-up commands and its rule tables are the registries."""

from __future__ import annotations

import pytest
from conftest import ROOT, run_cli

from pipeline.models.registry import documented, markers, rules, rules_markdown

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_two_setup_commands():
    block = README.split("```", 2)[1].strip().splitlines()
    assert [line.split("#")[0].strip() for line in block] == ["make demo", "make test"]


@pytest.mark.parametrize("audit", documented(), ids=lambda a: a.id)
def test_readme_rule_table_is_generated_from_the_registry(audit):
    start, end = markers(audit.id)
    assert start in README, f"README.md has no rule table of {audit.id}: python -m pipeline.models.registry {audit.id}"
    current = README[README.index(start) : README.index(end) + len(end)]
    assert current == rules_markdown(audit), "run: python -m pipeline.models.registry, and paste the tables into README.md"
    if audit.id == "csf_leak":
        assert rules(audit).height == 18


@pytest.mark.parametrize("command", ["run", "inspect", "validate", "runs", "diff", "synth"])
def test_every_command_documents_itself(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout, result.stderr


def test_example_config_settings_are_valid_when_uncommented(tmp_path):
    """examples/order-audit.toml shows every setting; its commented examples must load as they are written."""
    import re

    from pipeline.config import load_config
    from pipeline.ingest.formats import TableFormat

    text = (ROOT / "examples" / "order-audit.toml").read_text(encoding="utf-8")
    active = [line[2:] if re.match(r'^# (\[|[a-z_]+ = |"[^"]+" = )', line) else line for line in text.splitlines()]
    path = tmp_path / "all.toml"
    path.write_text("\n".join(active), encoding="utf-8")
    cfg = load_config(path)
    shown = cfg.formats["imaging_orders"]
    assert all(getattr(shown, f) != getattr(TableFormat(), f) for f in TableFormat.__dataclass_fields__ if f != "quote_char")
    assert cfg.values["imaging_orders"]["status"] and cfg.columns["procedures"]


def test_data_quality_doc_lists_every_check_of_the_suites():
    from pipeline.quality.checks_doc import END, START, checks_markdown

    text = (ROOT / "docs" / "DATA_QUALITY.md").read_text(encoding="utf-8")
    assert START in text, "docs/DATA_QUALITY.md has no generated table of checks"
    current = text[text.index(START) : text.index(END) + len(END)]
    assert current == checks_markdown(), "run: python -m pipeline.quality.checks_doc, and paste it into docs/DATA_QUALITY.md"
