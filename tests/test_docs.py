"""The README is the user's manual: it opens with the two set-up commands and its rule tables are the registries."""

from __future__ import annotations

import pytest
from conftest import ROOT, run_cli

from pipeline.models.registry import documented, markers, rules, rules_markdown

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_reading_examples_run_as_written_on_a_runs_outputs(small_input, tmp_path):
    """The README's Python (spreadsheet safety) and SQL (dashboard) examples, copied as written, against the
    folder a run published as REPORTS: the Python one read REPORTS/audited_orders.csv, a file no run writes
    since the outputs moved into one folder per audit."""
    import os
    import re
    import subprocess
    import sys

    assert run_cli("run", "--input", small_input, "--out", tmp_path / "REPORTS", "--no-validate", "--quiet").returncode == 0
    python = re.findall(r"```python\n(.*?)```", README, re.S)
    sql = re.findall(r"```sql\n(.*?)```", README, re.S)
    assert any("formula_guard" in p for p in python) and sql
    code = "\n".join(p for p in python if "REPORTS/" in p)
    code += "\nimport duckdb\n" + "".join(f"duckdb.sql({q!r}).fetchall()\n" for q in sql)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


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


@pytest.mark.parametrize("command", ["run", "inspect", "validate", "runs", "diff", "synth", "deck"])
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
    assert cfg.input_format == "fhir" and cfg.fhir.department_extension and "extension" in cfg.fhir.order_department


def test_fhir_mapping_table_is_generated_and_matches_what_the_reader_loads(tmp_path):
    """README.md and docs/FHIR.md print pipeline.ingest.fhir.mapping, and it names exactly the columns the reader fills."""
    import polars as pl
    from conftest import write_small_input
    from fhir_export import export_extract

    from pipeline.config import load_config
    from pipeline.ingest import load
    from pipeline.ingest.contract import CONTRACT_BY_NAME
    from pipeline.ingest.fhir.mapping import END, MAPPING, START, mapping_markdown
    from pipeline.ingest.fhir.tables import OPTIONAL_WHEN_FILLED

    for doc in (README, (ROOT / "docs" / "FHIR.md").read_text(encoding="utf-8")):
        assert doc[doc.index(START) : doc.index(END) + len(END)] == mapping_markdown(), (
            "run: python -m pipeline.ingest.fhir.mapping"
        )
    export = tmp_path / "export"
    export_extract(write_small_input(tmp_path / "csv"), export, variety=False)
    cfg = load_config()
    prepared = load.prepare_inputs(load.find_inputs(export, cfg), cfg, tmp_path)
    for table, prep in prepared.items():
        loaded = {c for c in pl.read_parquet_schema(prep.typed_parquet) if not c.startswith("_") and c != "source_line"}
        loaded -= {c for c in loaded if c.endswith("_is_date")}
        # (the loader's own columns: a partial birth date's range, derived from the mapped birth date)
        loaded -= set(CONTRACT_BY_NAME[table].derived_columns)
        # the small extract has no setting or position: those columns stay absent, as in its CSV
        unfilled = set(OPTIONAL_WHEN_FILLED.get(table, ()))
        assert loaded == {column for t, column, _, _ in MAPPING if t == table} - unfilled, table


def test_data_quality_doc_lists_every_check_of_the_suites():
    from pipeline.quality.checks_doc import END, START, checks_markdown

    text = (ROOT / "docs" / "DATA_QUALITY.md").read_text(encoding="utf-8")
    assert START in text, "docs/DATA_QUALITY.md has no generated table of checks"
    current = text[text.index(START) : text.index(END) + len(END)]
    assert current == checks_markdown(), "run: python -m pipeline.quality.checks_doc, and paste it into docs/DATA_QUALITY.md"


def test_each_check_s_description_renders_in_the_doc_as_written():
    """A description holding a pattern (`[A-TV-Z][0-9]...(\\.?...)`) rendered on GitHub as a broken link and lost
    its backslash: the generated table escapes it, so each rendered row ends with its check's description, character
    for character (mistune, the Markdown renderer Great Expectations already brings, with GitHub's table syntax)."""
    import html
    import re

    import mistune

    from pipeline.quality import checks_doc, validate

    descriptions = {}
    for _, paths in checks_doc.suite_paths():
        for path, _ in paths:
            suite = validate.load_suite(path)
            for table in suite["tables"]:
                descriptions |= {e["meta"]["check_id"]: e["meta"]["description"] for e in table["expectations"]}
            descriptions |= {c["check_id"]: c["description"] for c in suite.get("sql_checks", [])}
    assert any("](" in d for d in descriptions.values()), "no description holds a pattern any more: the test lost its subject"
    html_table = mistune.create_markdown(plugins=["table"])(checks_doc.checks_markdown())
    rendered = re.findall(r"<tr>\s*<td><code>([^<]+)</code></td>.*?<td>([^<]*(?:<(?!/td>)[^<]*)*)</td>\s*</tr>", html_table, re.S)
    assert len(rendered) == len(descriptions)
    for check_id, shown in rendered:
        assert "<a " not in shown, check_id
        assert html.unescape(shown) == descriptions[check_id].replace("\n", " "), check_id


def test_scheduling_doc_names_every_log_event_and_stage():
    """docs/SCHEDULING.md's *Logs* lists every ``event`` and ``stage`` the code logs, for a scheduler that reads them."""
    import re

    section = (ROOT / "docs" / "SCHEDULING.md").read_text().split("## Logs")[1].split("\n## ")[0]
    named = set(re.findall(r"`([a-z_]+)`", section))
    code = "\n".join(p.read_text() for p in (ROOT / "pipeline").rglob("*.py") if "synth" not in p.parts)
    events = set(re.findall(r'\bevent="([a-z_]+)"', code)) | {"stage_start", "stage_done", "log", "error"}
    stages = set(re.findall(r'\bstage\("([a-z_]+)"', code))
    assert len(events) > 15 and len(stages) > 10
    assert sorted(events - named) == [] and sorted(stages - named) == []


@pytest.mark.parametrize(("codes", "expected"), [([2], 2), ([4, 4, 4], 4), ([4, 0], 0), ([4, 3], 3)])
def test_scheduling_doc_retry_wrapper_hands_on_the_exit_code(tmp_path, codes, expected):
    """The crontab retry wrapper, run as docs/SCHEDULING.md writes it (order-audit and sleep stand-ins): a
    failure reaches alert.sh with its code, and a run that succeeds on a retry alerts nobody. It waits between
    tries only (it had slept ten minutes after the last one before the alert went out)."""
    import re
    import subprocess

    doc = (ROOT / "docs" / "SCHEDULING.md").read_text()
    (wrapper,) = re.findall(r"`(\( for i in 1 2 3[^`]+)`", doc)
    script = wrapper.replace("order-audit run ...", "next_code").replace("/srv/order-audit/alert.sh", "alert")
    stand_ins = (
        f"codes=({' '.join(map(str, codes))}); n=0\n"
        "next_code() { c=${codes[$n]}; n=$((n + 1)); return $c; }\n"
        'sleep() { echo "sleep $1"; }\n'
        'alert() { echo "alert $1"; }\n'
    )
    result = subprocess.run(["bash", "-c", stand_ins + script], capture_output=True, text=True, timeout=30)
    waits = "sleep 600\n" * (len(codes) - 1)
    assert result.stdout == waits + ("" if expected == 0 else f"alert {expected}\n"), result.stderr


def test_audits_doc_names_every_file_an_audits_report_folder_holds():
    """docs/AUDITS.md's folder listing names what ``report/`` may hold besides the sections audit.toml lists: an
    optional file the engine reads by its name (report/verified_from.sql came without a line there) is found by an
    audit's author only if the contract names it."""
    import re

    from pipeline import audits

    listing = (ROOT / "docs" / "AUDITS.md").read_text(encoding="utf-8").split("```")[1]
    report_lines = listing[listing.index("  report/") : listing.index("  expectations/")]
    named = set(re.findall(r"[a-z_]+\.(?:html|sql)", report_lines))
    assert named == {"definitions.html", "period_note.html", "verified_from.sql"}
    for audit in audits.discover([str(ROOT / "tests" / "toy_audit")]):
        sections = {f"{s}.{ext}" for s in audit.report_sections for ext in ("html", "sql")}
        optional = {p.name for p in audit.report_dir.glob("*")} - sections if audit.report_dir.is_dir() else set()
        # period_note.sql goes with period_note.html: "(+ .sql)" in the listing
        assert optional - {"period_note.sql"} <= named, (audit.id, sorted(optional - named))


def _exit_code_table() -> dict[int, str]:
    """docs/SCHEDULING.md's exit codes and the scheduler action each row gives ('other': a bug, as 70)."""
    section = (ROOT / "docs" / "SCHEDULING.md").read_text().split("## Exit codes")[1].split("\n## ")[0]
    actions = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("code", "---"):
            for code in cells[0].split(" / "):
                actions[70 if code == "other" else int(code)] = cells[2]
    return actions


def test_scheduling_doc_dagster_op_does_what_the_exit_code_table_says():
    """The Dagster op as docs/SCHEDULING.md writes it, run for every exit code of the doc's table (Dagster is not
    installed: its op decorator and two exceptions stand in, as does the process): it retries what the table says
    to retry (4, a stop, a kill: it raised Failure for 143 and a kill), fails on the rest, and runs the command
    the crontab runs, from three months before its month."""
    import re
    import sys
    import types

    doc = (ROOT / "docs" / "SCHEDULING.md").read_text()
    (code,) = re.findall(r"## Dagster \(op\)\n\n```python\n(.*?)```", doc, re.S)

    class Failure(Exception):
        pass

    class RetryRequested(Exception):
        def __init__(self, max_retries: int = 1, seconds_to_wait: float = 0):  # Dagster's signature
            super().__init__(max_retries, seconds_to_wait)

    dagster = types.SimpleNamespace(Failure=Failure, RetryRequested=RetryRequested, op=lambda **_: lambda f: f)
    namespace: dict = {}
    saved = sys.modules.get("dagster")
    sys.modules["dagster"] = dagster
    try:
        exec(compile(code, "SCHEDULING.md", "exec"), namespace)
    finally:
        sys.modules.pop("dagster") if saved is None else sys.modules.__setitem__("dagster", saved)
    calls = []

    def run_returning(rc):
        def run(args, cwd):
            calls.append((args, cwd))
            return types.SimpleNamespace(returncode=rc)

        return types.SimpleNamespace(run=run)

    def outcome(rc: int, month: str = "2026-10") -> str:
        namespace["subprocess"] = run_returning(rc)
        try:
            namespace["order_audit"](types.SimpleNamespace(op_config={"month": month}))
        except RetryRequested:
            return "retry"
        except Failure:
            return "fail"
        return "ok"

    table = _exit_code_table()
    assert sorted(table) == [-9, 0, 1, 2, 3, 4, 70, 130, 137, 143]
    expected = {rc: "ok" if rc == 0 else "retry" if action.startswith("retry") else "fail" for rc, action in table.items()}
    assert {rc: outcome(rc) for rc in table} == expected
    assert expected == {
        -9: "retry",
        0: "ok",
        1: "fail",
        2: "fail",
        3: "fail",
        4: "retry",
        70: "fail",
        130: "retry",
        137: "retry",
        143: "retry",
    }
    # a SIGTERM or SIGINT before the run installs its handlers: Python gives the signal's number, negative
    assert (outcome(-15), outcome(-2)) == ("retry", "retry")
    args, cwd = calls[0]
    assert cwd == "/srv/order-audit" and args[:2] == [".venv/bin/order-audit", "run"]
    assert args[args.index("--from") + 1 :][:3] == ["2026-07", "--to", "2026-10"]
    firsts = []
    for month in range(1, 13):  # -3 months, as the crontab's `date -d "$M-01 -3 months"`
        outcome(0, f"2026-{month:02d}")
        firsts.append(calls[-1][0][calls[-1][0].index("--from") + 1])
    assert firsts == ["2025-10", "2025-11", "2025-12"] + [f"2026-{m:02d}" for m in range(1, 10)]


def test_scheduling_doc_airflow_command_renders_and_runs_the_crontabs_command(tmp_path):
    """The Airflow task's bash_command as docs/SCHEDULING.md writes it (Airflow is not installed: its template
    rendered with Jinja, as Airflow does, for the run of November 3), run by bash with order-audit standing in:
    it loads October and reruns July to October, the crontab's command."""
    import ast
    import datetime as dt
    import re
    import subprocess

    import jinja2

    doc = (ROOT / "docs" / "SCHEDULING.md").read_text()
    (code,) = re.findall(r"## Airflow \(BashOperator\)\n\n```python\n(.*?)```", doc, re.S)
    (template,) = [
        ast.literal_eval(k.value) for k in ast.walk(ast.parse(code)) if isinstance(k, ast.keyword) and k.arg == "bash_command"
    ]
    command = jinja2.Template(template).render(data_interval_end=dt.datetime(2026, 11, 3, 2, 15, tzinfo=dt.UTC))  # Nov 3's run
    assert command.startswith("cd /srv/order-audit && ")
    stand_in = tmp_path / ".venv" / "bin" / "order-audit"
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    stand_in.chmod(0o755)
    done = subprocess.run(["bash", "-c", command.replace("/srv/order-audit", str(tmp_path), 1)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "run",
        "--input",
        "/data/extracts/2026-10",
        "--warehouse",
        "/srv/order-audit/warehouse.duckdb",
        "--from",
        "2026-07",
        "--to",
        "2026-10",
        "--out",
        "/srv/reports",
        "--log-format",
        "json",
    ]
