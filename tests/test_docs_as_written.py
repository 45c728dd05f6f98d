"""What the docs quote, held to what it quotes: the demo `make demo` makes, the scheduler lines a data engineer
pastes (the README's and docs/SCHEDULING.md's crontab and Airflow task run the same command), the test decks'
order counts, and every benchmark figure the README and docs/SCALING.md quote from benchmarks/results.md (the
100M figure of SCALING.md had stayed at an earlier run's 266 s while the README said 251 s)."""

from __future__ import annotations

import ast
import re
import subprocess
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import jinja2
import pytest
from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
SCHEDULING = (ROOT / "docs" / "SCHEDULING.md").read_text(encoding="utf-8")
SCALING = (ROOT / "docs" / "SCALING.md").read_text(encoding="utf-8")
BENCH_README = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
RESULTS = (ROOT / "benchmarks" / "results.md").read_text(encoding="utf-8")

# the command every scheduler line runs for the run of November 3, 2026: load October, rerun July to October
MONTHLY_JOB = [
    *("run", "--input", "/data/extracts/2026-10", "--warehouse", "/srv/order-audit/warehouse.duckdb"),
    *("--from", "2026-07", "--to", "2026-10", "--out", "/srv/reports", "--log-format", "json"),
]


def test_the_readme_says_what_make_demo_generates():
    """The README's words on `make demo` (its patients, months and first month, where the report lands) are the
    Makefile's."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    setting = dict(re.findall(r"^(DEMO_\w+) \?= (\S+)$", makefile, re.M))
    intro = README.split("\n## ", 1)[0]
    said = re.search(r"`make demo` then generates ([\d,]+) patients' extracts \((\d+) months from (\d{4}-\d{2})\)", intro)
    assert said, "the README's introduction no longer says what make demo generates"
    assert (said.group(1).replace(",", ""), said.group(2), said.group(3)) == (
        setting["DEMO_PATIENTS"],
        setting["DEMO_MONTHS"],
        setting["DEMO_START"],
    )
    assert f"writes {setting['DEMO_DIR']}/output/index.html" in intro and f"under `{setting['DEMO_DIR']}/output/`" in intro


def _airflow_task(doc: str) -> dict:
    """The keywords of the doc's BashOperator(...) call, as written (literals only)."""
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", doc, re.S) if "BashOperator(" in c]
    (call,) = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "BashOperator"]
    return {k.arg: ast.unparse(k.value) for k in call.keywords}


def _run_bash_with_a_stand_in(command: str, tmp_path: Path) -> list[str]:
    """Run a scheduler's command in bash from /srv/order-audit (tmp_path stands in), .venv/bin/order-audit a stand-in
    that prints its arguments; the arguments it was given."""
    stand_in = tmp_path / ".venv" / "bin" / "order-audit"
    stand_in.parent.mkdir(parents=True, exist_ok=True)
    stand_in.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    stand_in.chmod(0o755)
    assert command.startswith("cd /srv/order-audit && "), command
    done = subprocess.run(
        ["sh", "-c", command.replace("/srv/order-audit", str(tmp_path), 1)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_readmes_airflow_task_is_the_scheduling_docs(tmp_path):
    """The README's Airflow task runs what docs/SCHEDULING.md's does, rendered for the run of November 3: it had no
    `cd` and a bare `order-audit` (not on an Airflow worker's PATH), and retried after another delay."""
    readme, doc = _airflow_task(README), _airflow_task(SCHEDULING)
    assert readme["bash_command"] == doc["bash_command"]
    assert (readme["retries"], readme["retry_delay"].replace("timedelta", "pendulum.duration")) == (
        doc["retries"],
        doc["retry_delay"],
    )
    assert "from datetime import timedelta" in README.split("BashOperator(", 1)[0][-300:]
    template = ast.literal_eval(readme["bash_command"])
    import datetime as dt

    command = jinja2.Template(template).render(data_interval_end=dt.datetime(2026, 11, 3, 2, 15, tzinfo=dt.UTC))  # Nov 3's run
    assert _run_bash_with_a_stand_in(command, tmp_path) == MONTHLY_JOB


@pytest.mark.parametrize("doc", ["README.md", "docs/SCHEDULING.md"])
def test_the_crontab_line_runs_the_monthly_command(doc, tmp_path):
    """The doc's crontab line as cron runs it on November 3 (cron turns `\\%` into `%`; sh runs the rest, `date`'s
    `last month` counted from that day): the same command as the Airflow task."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    (line,) = [x for b in re.findall(r"```[a-z]*\n(.*?)```", text, re.S) for x in b.splitlines() if x.startswith("15 2 3 * * ")]
    command = line.removeprefix("15 2 3 * * ").replace("\\%", "%")
    assert "%" not in line.replace("\\%", ""), "an unescaped % ends a crontab command"
    command = re.sub(r"\s*(2?>>|>>)\s*\S+.*$", "", command.split(" || ")[0])  # the log's redirection and the alert
    command = command.replace("date -d 'last month'", "date -d '2026-11-03 -1 month'")
    assert _run_bash_with_a_stand_in(command, tmp_path) == MONTHLY_JOB


def test_the_deck_order_counts_quoted_are_the_decks():
    """The README's and benchmarks/README's count of the decks' audited orders are those the deck files expect."""
    from pipeline.deck import deck_files, mine

    counts = {
        audit: sum(mine(row, f, audit) for f in deck_files() if not f.separate for row in f.case.get("expected_orders", []))
        for audit in ("csf_leak", "low_back_pain")
    }
    assert f"(both audits: {counts['csf_leak']} CSF leak and {counts['low_back_pain']} low back pain orders)" in README
    assert f"{counts['csf_leak']} CSF-leak and {counts['low_back_pain']} low back pain audited orders" in BENCH_README
    for audit, n in counts.items():
        assert f"- deck csv {audit}: agree order by order: pipeline, pipeline --no-validate ({n} orders)." in RESULTS


# ------------------------------------------------------------------------ figures quoted from benchmarks/results.md


def _results_table(heading: str) -> dict[tuple[str, str, str], dict[str, str]]:
    """A table of results.md under its heading: (scale, format, validation or '') -> column -> cell."""
    section = RESULTS.split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines() if line.startswith("|")]
    header, body = rows[0], rows[2:]
    out = {}
    for row in body:
        cells = dict(zip(header, row, strict=True))
        out[(cells["scale"], cells["format"], cells.get("validation", ""))] = cells
    return out


STAGES = _results_table("Pipeline stages")
BASELINES = _results_table("Baselines")


def _median(cell: str) -> float:
    return float(cell.split()[0])


def _as_quoted(value: float, quoted: str) -> str:
    """value rounded half up as the doc wrote its figure (as many decimals): 73.85 s is quoted 73.9 s."""
    decimals = len(quoted.split(".")[1]) if "." in quoted else 0
    return str(Decimal(repr(value)).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


# the README's Performance table: its rows' labels -> the results.md cell (and which process)
PERFORMANCE_ROWS = {
    "`order-audit run` (with the gate), CSV": ("pipeline", ("10M", "csv", "yes")),
    "`order-audit run --no-validate`, CSV": ("pipeline", ("10M", "csv", "no")),
    "floor (one DuckDB query per audit, verdicts per order)": ("floor", ("10M", "csv", "")),
    "pandas audit (both audits)": ("pandas", ("10M", "csv", "")),
    "`order-audit run`, the same orders as a FHIR export (10 GB NDJSON)": ("pipeline", ("10M", "fhir", "yes")),
    "`order-audit run`, case-dense 10M (188k audited orders)": ("pipeline", ("10M-dense", "csv", "yes")),
    "`order-audit run`, 100M orders out of core": ("pipeline", ("100M", "csv", "yes")),
}


def test_the_readmes_performance_table_quotes_results_md():
    """Every figure of the README's Performance table (whole process, stages, CPU, peak memory, the floor beside a
    row) is results.md's median, rounded as written."""
    section = README.split("\n## Performance\n", 1)[1].split("\n## ", 1)[0]
    rows = {cells[0]: cells[1:] for line in section.splitlines() if line.startswith("| ")
            for cells in [[c.strip() for c in line.strip().strip("|").split("|")]]}  # fmt: skip
    assert set(PERFORMANCE_ROWS) <= set(rows), sorted(set(PERFORMANCE_ROWS) - set(rows))
    for label, (who, key) in PERFORMANCE_ROWS.items():
        time_cell, cpu_cell, memory_cell = rows[label]
        if who == "pipeline":
            cells = STAGES[key]
            whole, cpu, rss = _median(cells["whole process"]), float(cells["CPU s"]), float(cells["peak RSS MB"])
        else:
            cells = BASELINES[key[:2] + ("",)]
            whole, cpu, rss = (float(cells[f"{who} {c}"].split()[0]) for c in ("process", "CPU s", "RSS MB"))
        quoted = re.match(r"([\d.]+) s", time_cell).group(1)
        assert quoted == _as_quoted(whole, quoted), (label, quoted, whole)
        for stage, figure in re.findall(r"(parse|gate|models|marts|output checks|render) ([\d.]+)", time_cell):
            value = _median(STAGES[key][stage.replace(" ", "_")])
            assert figure == _as_quoted(value, figure), (label, stage, figure, value)
        floor = re.search(r"\(floor ([\d.]+) s(?:, ([\d.]+) GB)?\)", time_cell)
        if floor:
            baseline = BASELINES[key[:2] + ("",)]
            assert floor.group(1) == _as_quoted(float(baseline["floor process"].split()[0]), floor.group(1)), label
            if floor.group(2):
                assert floor.group(2) == _as_quoted(float(baseline["floor RSS MB"]) / 1000, floor.group(2)), label
        quoted_cpu = re.fullmatch(r"([\d.]+) s", cpu_cell).group(1)
        assert quoted_cpu == _as_quoted(cpu, quoted_cpu), (label, cpu_cell, cpu)
        quoted_memory = re.fullmatch(r"([\d.]+) GB", memory_cell).group(1)
        assert quoted_memory == _as_quoted(rss / 1000, quoted_memory), (label, memory_cell, rss)


def test_the_small_runs_and_scalings_figures_quote_results_md():
    """The README's deck figures (median, range, CPU) and docs/SCALING.md's 100M figure are results.md's."""
    with_gate, without = STAGES[("deck", "csv", "yes")], STAGES[("deck", "csv", "no")]

    def said(cells: dict) -> str:
        return cells["whole process"].replace("–", "-").replace("(", "").replace(")", "")

    small = re.search(
        r"takes ([\d.]+) s\s+\(([\d.]+-[\d.]+)\) with the gate and ([\d.]+) s \(([\d.]+-[\d.]+)\) with `--no-validate`"
        r" in the bench run above, ([\d.]+) and ([\d.]+)\s+CPU-s",
        README,
    )
    assert small, "the README's Small runs paragraph no longer quotes the deck's figures"
    assert f"{small.group(1)} {small.group(2)}" == said(with_gate)
    assert f"{small.group(3)} {small.group(4)}" == said(without)
    assert (small.group(5), small.group(6)) == (with_gate["CPU s"], without["CPU s"])
    hundred_million = re.search(r"100M orders run in (\d+) s with DuckDB", SCALING).group(1)
    assert hundred_million == _as_quoted(_median(STAGES[("100M", "csv", "yes")]["whole process"]), hundred_million)


def test_the_render_benchs_run_json_is_an_audits_and_the_runs_own_is_refused_in_one_line(tmp_path):
    """The render bench's documented command gives it an audit's run.json (`OUT/run.json`, the docs' word before,
    holds what the audits share and stopped the bench with a KeyError after its imports); the top one is refused."""
    import json

    from benchmarks import render_bench

    for text in (README, BENCH_README):
        (command,) = re.findall(r"python -m benchmarks\.render_bench [^`]*?--run-json (\S+)[^`]*?--audit (\w+)", text)
        assert command[0].endswith(f"/{command[1]}/run.json"), command
    (tmp_path / "csf_leak").mkdir()
    (tmp_path / "run.json").write_text(json.dumps({"run_id": "R", "audits": ["csf_leak"]}), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"the run's own run.json; give an audit's, .*/<audit id>/run.json"):
        render_bench._run_info(tmp_path / "run.json", None)
    audit_record = {"run_id": "R", "rule_set_version": "v", "code_set_versions": {}, "files": {}}
    (tmp_path / "csf_leak" / "run.json").write_text(json.dumps(audit_record), encoding="utf-8")
    assert render_bench._run_info(tmp_path / "csf_leak" / "run.json", None) == {
        "run_id": "R",
        "rule_set_version": "v",
        "code_set_versions": {},
    }


def test_the_number_of_models_the_readme_quotes_is_the_runners():
    """The README's count of the models a run's graph parses (core, every shipped audit's, the generated ones)."""
    from pipeline import audits
    from pipeline.models import runner

    models = runner.core_models() + [m for a in audits.discover() if a.runnable for m in runner.audit_models(a)]
    (quoted,) = re.findall(r"parses the (\d+) models", README)
    assert int(quoted) == len(models)
