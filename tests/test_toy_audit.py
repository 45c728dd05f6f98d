"""The engine is closed for change: a third audit that lives only in tests/toy_audit (three rules, a few
patients, its own deck) is found through the documented extra-audits setting (the config's
``audits_path``; ``$ORDER_AUDIT_AUDITS_PATH``) and run end to end through the real CLI, and no engine
file names any audit. One run of the toy deck (module scope): its input has no procedures table, so
the CSF-leak audit is skipped with a line in the log and the run still succeeds."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from conftest import run_cli

from pipeline import audits
from pipeline.deck import SITE_TIMEZONE, deck_files, deck_outputs, deck_problems, mine, rows_of, write_deck_input

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "toy_audit"
KEY = {"ORDER_AUDIT_PSEUDONYM_KEY": "toy-test-key"}
ENGINE = ("pipeline", "sql", "reports", "expectations")  # the engine's folders: they name no audit


def _toy():
    (toy,) = [a for a in audits.discover([str(TOY)]) if a.id == "toy_audit"]
    return toy


TOY_FILES = deck_files([_toy()])


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("toy")
    write_deck_input(base / "in", TOY_FILES)
    config = base / "site.toml"
    config.write_text(f"audits_path = [{json.dumps(str(TOY))}]\n", encoding="utf-8")
    reid = tmp_path_factory.mktemp("toy-reid") / "reid.csv"  # never beside the warehouse
    out = base / "out"
    r = run_cli(
        "run", "--input", base / "in", "--out", out, "--warehouse", base / "wh.duckdb", "--config", config,
        "--site-timezone", SITE_TIMEZONE, "--reid-file", reid, env=KEY,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return {"out": out, "reid": reid, "stderr": r.stderr, "config": config}


@pytest.mark.parametrize("f", TOY_FILES, ids=[f.id for f in TOY_FILES])
def test_toy_deck_file(toy_run, f):
    orders, cases = deck_outputs(toy_run["out"], toy_run["reid"], "toy_audit")
    problems = deck_problems(orders, cases, f, "toy_audit")
    assert not problems, f"toy_audit on deck {f.id}: {f.case['description']}\n  " + "\n  ".join(problems)


def test_every_toy_rule_is_fired_by_its_deck():
    fired = {e["reasons"] for f in TOY_FILES for e in rows_of(f.case, "expected_orders") if mine(e, f, "toy_audit")}
    assert fired == {r["reason_code"] for r in audits.check_rules(_toy())}


def test_an_audit_the_input_cannot_feed_is_skipped_and_the_run_succeeds(toy_run):
    assert "order-audit: csf_leak skipped: the input has no procedures table" in toy_run["stderr"].splitlines()
    out = toy_run["out"]
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "run.json", "toy_audit"]
    assert json.loads((out / "run.json").read_text())["audits"] == ["toy_audit"]
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="toy_audit/report.html"' in index and "Toy audit: contrast in adult head CT" in index


def test_the_toy_audit_gets_the_whole_report_and_its_own_feed(toy_run):
    folder = toy_run["out"] / "toy_audit"
    report = (folder / "report.html").read_text(encoding="utf-8")
    assert "Toy head-CT audit" in report and "Head CT orders with contrast" in report  # short_title heads the pages
    assert "Toy guideline of the order-audit tests" in report  # the methods cite the manifest's guideline
    assert "toy-or-1" in report  # the flagged case for chart review
    feed = pl.read_parquet(folder / "metrics.parquet")
    assert feed["audit_id"].unique().to_list() == ["toy_audit"] and feed["schema_version"].unique().to_list() == ["3.3"]
    overall = feed.filter((pl.col("period") == "all") & (pl.col("level") == "overall"))
    measures = set(overall["measure_id"])
    assert {"contrast_ct_rate", "patients_without_contrast", "reason_contrast_head_ct", "reason_cancelled"} <= measures
    # no report/verified_from.sql (docs/AUDITS.md: optional): no look-back to mark, every row complete
    assert feed.group_by("look_back", "verified_from").len().rows() == [("complete", None, feed.height)]
    assert json.loads((folder / "metrics.json").read_text())["verified_from"] is None
    counts = pl.read_parquet(folder / "audited_orders.parquet")
    assert counts.schema["ordered_at"] == pl.Datetime("us", "UTC")  # typed as its [outputs.parquet_types] says
    assert counts.schema["ordered_at_local"] == pl.Datetime("us") and counts.schema["order_id"] == pl.String
    assert pl.read_parquet(folder / "cases.parquet").schema["index_at"] == pl.Datetime("us", "UTC")


def test_the_extra_audits_setting_and_environment_list_the_toy_audit(toy_run):
    by_config = run_cli("audits", "--config", toy_run["config"])
    assert "toy_audit  toy-audit-0.1.0  Toy audit: contrast in adult head CT" in by_config.stdout
    assert "needs: imaging_orders, patients" in by_config.stdout
    by_env = run_cli("audits", "--json", env={"ORDER_AUDIT_AUDITS_PATH": str(TOY)})
    assert "toy_audit" in {a["id"] for a in json.loads(by_env.stdout)}
    assert "toy_audit" not in run_cli("audits").stdout  # not shipped: only the setting finds it


def test_no_engine_file_names_an_audit():
    ids = {a.id for a in audits.discover([str(TOY)])}
    assert {"csf_leak", "low_back_pain", "toy_audit"} <= ids
    names = re.compile("|".join(sorted(re.escape(n) for i in ids for n in (i, i.replace("_", "-")))))
    found = [
        f"{path.relative_to(ROOT)}:{n}: {m.group(0)}"
        for folder in ENGINE
        for path in sorted((ROOT / folder).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1)
        if (m := names.search(line))
    ]
    assert not found, "engine files name an audit (the audit's folder says it instead):\n" + "\n".join(found)


def _run_changed_toy(toy_run, tmp_path, file: str, old: str, new: str, gate: bool = False):
    """Run the toy deck with a copy of the toy audit whose ``file`` has ``old`` replaced by ``new`` (``gate``:
    with the data-quality gate, else ``--no-validate``)."""
    changed = tmp_path / "toy_audit"
    shutil.copytree(TOY, changed)
    path = changed / file
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    config = tmp_path / "site.toml"
    config.write_text(f"audits_path = [{json.dumps(str(changed))}]\n", encoding="utf-8")
    r = run_cli(
        "run", "--input", toy_run["out"].parent / "in", "--out", tmp_path / "out", "--config", config,
        "--site-timezone", SITE_TIMEZONE, *([] if gate else ["--no-validate"]), env=KEY,
    )  # fmt: skip
    return r, changed


def test_a_model_reading_what_nothing_provides_stops_the_run_before_the_input_checks(toy_run, tmp_path):
    """The models' graph is checked once the inputs are parsed, while Great Expectations still loads in its
    worker: a model that cannot run stops the run before the gate's checks, not after them."""
    orders = "sql/toy_audit__int_orders.sql"
    r, _ = _run_changed_toy(toy_run, tmp_path, orders, "JOIN stg_patients AS p", "JOIN toy_audit__int_nothing AS p", gate=True)
    assert r.returncode == 1, r.stderr
    assert "reads toy_audit__int_nothing, which no model, generated model or declared source" in r.stderr.splitlines()[-1]
    assert "parse: done" in r.stderr and "gate: done" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_parquet_type_for_a_column_the_mart_lacks_stops_the_run_naming_the_manifest(toy_run, tmp_path):
    old = 'mart_cases = { index_at = "TIMESTAMPTZ" }'
    r, changed = _run_changed_toy(toy_run, tmp_path, "audit.toml", old, old[:-2] + ', closed_at = "DATE" }')
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines()[-1] == (
        f"order-audit: error: {changed / 'audit.toml'}: [outputs.parquet_types] mart_cases names closed_at, a column "
        "the audit's mart_cases does not have; name the mart's columns"
    )
    assert not (tmp_path / "out").exists()


def test_an_order_that_fires_no_rule_stops_the_run_naming_the_registry(toy_run, tmp_path):
    flags = "sql/toy_audit__int_order_flags.sql"
    r, broken = _run_changed_toy(toy_run, tmp_path, flags, "o.contrast = 'without'", "false")
    assert r.returncode == 1, r.stderr
    assert f"{broken / 'rules.csv'}: 2 audited order(s) fire no rule (e.g. order toy-or-2)" in r.stderr.splitlines()[-1]
    assert not (tmp_path / "out").exists()


FLAGS_SQL = "sql/toy_audit__int_order_flags.sql"


@pytest.mark.parametrize(
    ("file", "old", "new", "named"),
    [
        # the author's likeliest mistake: a column the model's inputs lack
        (
            "sql/toy_audit__int_order_flags.sql",
            "o.contrast = 'without'",
            "o.contrast_kind = 'without'",
            "sql/toy_audit__int_order_flags.sql",
        ),
        # a rule's flag_column the flags model does not write: the generated model names rules.csv
        ("rules.csv", "inappropriate,has_contrast,", "inappropriate,has_contrast_x,", "rules.csv's flag_column"),
    ],
)
def test_an_audit_model_duckdb_cannot_build_is_one_line_naming_its_file(toy_run, tmp_path, file, old, new, named):
    """An audit's model naming a column its inputs lack ended in exit 70, "a bug in order-audit", a traceback and
    no file named. It is the author's to fix: exit 1, the file (or, for a generated model, the file it is written
    from) and DuckDB's first line."""
    r, changed = _run_changed_toy(toy_run, tmp_path, file, old, new)
    assert r.returncode == 1, r.stderr
    last = r.stderr.splitlines()[-1]
    assert str(changed / named.split("'")[0]) in last and named.split("/")[-1] in last, last
    fix = "; fix the audit's SQL" if file.endswith(".sql") else "; fix what it is written from"
    assert "DuckDB cannot build the model (Binder Error: " in last and last.endswith(fix), last
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


def test_a_broken_suite_of_the_audit_stops_its_run_before_any_input_is_read(toy_run, tmp_path):
    """An audit's expectations/*.json that is not JSON was the JSONDecodeError's traceback, exit 70, once the input
    was parsed (the audit author's review). The folder is not ready: `--audit` stops with one line naming the file,
    line and column, exit 1, before the input is read."""
    changed = tmp_path / "toy_audit"
    shutil.copytree(TOY, changed)
    suite = changed / "expectations" / "orders.json"
    suite.parent.mkdir()
    suite.write_text('{\n  "suite": "toy_audit.orders",\n  "tables": [],\n}\n', encoding="utf-8")
    r = run_cli(
        "run", "--input", toy_run["out"].parent / "in", "--out", tmp_path / "out", "--audit", "toy_audit",
        "--site-timezone", SITE_TIMEZONE, env={**KEY, "ORDER_AUDIT_AUDITS_PATH": str(changed)},
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines()[-1] == (
        f"order-audit: error: --audit toy_audit cannot run: {suite}, line 4, column 1: not JSON (Expecting property name "
        "enclosed in double quotes); fix the file"
    )
    assert "Traceback" not in r.stderr and "parsed" not in r.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("folder", "is not a regular file (a folder, a pipe or a device); make it a JSON file, or remove it"),
        ("nested", "JSON nested too deeply to read; fix the file"),
    ],
)
def test_a_suite_that_is_a_folder_or_nested_too_deeply_is_one_line(toy_run, tmp_path, kind, said):
    """The hostile review (2026-12-05): a folder named orders.json in an audit's expectations/ was IsADirectoryError's
    traceback, and a suite nested deeper than Python's JSON parser goes RecursionError's, exit 70."""
    changed = tmp_path / "toy_audit"
    shutil.copytree(TOY, changed)
    suite = changed / "expectations" / "orders.json"
    suite.parent.mkdir()
    if kind == "folder":
        suite.mkdir()
    else:
        suite.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    r = run_cli(
        "run", "--input", toy_run["out"].parent / "in", "--out", tmp_path / "out", "--audit", "toy_audit",
        "--site-timezone", SITE_TIMEZONE, env={**KEY, "ORDER_AUDIT_AUDITS_PATH": str(changed)},
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines()[-1] == f"order-audit: error: --audit toy_audit cannot run: {suite}: {said}", r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


def _blocking_check(expectation: dict) -> str:
    """A suite of the toy audit holding one blocking check of src_patients."""
    meta = {"check_id": "toy_audit.patients.born", "severity": "blocking", "row_level": True, "description": "A birth date."}
    table = {
        "table": "src_patients",
        "key_columns": ["source_file", "source_line"],
        "expectations": [expectation | {"meta": meta}],
    }
    return json.dumps({"suite": "toy_audit.patients", "tables": [table]}, indent=2)


@pytest.mark.parametrize(
    ("expectation", "said"),
    [
        (
            {
                "type": "unexpected_rows_expectation",
                "kwargs": {"unexpected_rows_query": "SELECT source_line FROM {batch} WHERE birth_day IS NULL"},
            },
            'Binder Error: Referenced column "birth_day" not found in FROM clause!',
        ),
        (
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "birth_day"}},
            "column birth_day does not exist in src_patients",
        ),
    ],
    ids=["query", "column"],
)
def test_a_blocking_check_of_the_audit_that_cannot_run_names_its_suite_not_the_extract(toy_run, tmp_path, expectation, said):
    """A blocking check of an audit's suite naming a column the table lacks stopped the run with exit 3, "data-quality
    gate failed ... fix the extract and run again" and GX's multi-line SQLAlchemy error: the site's data blamed for the
    author's mistake (the audit author's review). One line naming the suite, the check and the database's first line,
    exit 1 (docs/SCHEDULING.md: fix the job's files, not the extract); nothing loaded or published."""
    changed = tmp_path / "toy_audit"
    shutil.copytree(TOY, changed)
    suite = changed / "expectations" / "patients.json"
    suite.parent.mkdir()
    suite.write_text(_blocking_check(expectation), encoding="utf-8")
    r = run_cli(
        "run", "--input", toy_run["out"].parent / "in", "--out", tmp_path / "out", "--warehouse", tmp_path / "wh.duckdb",
        "--audit", "toy_audit", "--site-timezone", SITE_TIMEZONE, env={**KEY, "ORDER_AUDIT_AUDITS_PATH": str(changed)},
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines()[-1] == (
        f"order-audit: error: {suite}: check toy_audit.patients.born [src_patients] could not run ({said}): the check is "
        "wrong, not the extract; fix the check"
    )
    assert "fix the extract and run again" not in r.stderr and "gate: done" in r.stderr and "loaded " not in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_warning_check_of_the_audit_that_cannot_run_is_one_log_line_naming_its_suite(toy_run, tmp_path):
    """A warning check that cannot run logged Great Expectations' whole error: SQLAlchemy's wrapped query, twice, a
    dozen lines under the warning. One line: the check, the database's first line, the suite file; the run goes on."""
    changed = tmp_path / "toy_audit"
    shutil.copytree(TOY, changed)
    suite = changed / "expectations" / "patients.json"
    suite.parent.mkdir()
    query = "SELECT source_line FROM {batch} WHERE birth_day IS NULL"
    check = {"type": "unexpected_rows_expectation", "kwargs": {"unexpected_rows_query": query}}
    suite.write_text(_blocking_check(check).replace('"blocking"', '"warning"'), encoding="utf-8")
    r = run_cli(
        "run", "--input", toy_run["out"].parent / "in", "--out", tmp_path / "out", "--warehouse", tmp_path / "wh.duckdb",
        "--audit", "toy_audit", "--site-timezone", SITE_TIMEZONE, env={**KEY, "ORDER_AUDIT_AUDITS_PATH": str(changed)},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    said = [n for n, line in enumerate(lines) if "toy_audit.patients.born" in line]
    assert len(said) == 1, r.stderr
    assert lines[said[0]] == (
        "order-audit: data-quality warning toy_audit.patients.born [src_patients] could not run (Binder Error: Referenced "
        f'column "birth_day" not found in FROM clause!) ({suite}; the check is wrong, not the extract: fix the check)'
    )
    assert not lines[said[0] + 1].startswith(("Candidate", "LINE", "[SQL", "(Background", " ")), r.stderr


def _run_toy_with_report(toy_run, tmp_path, report: str, files: dict[str, str] | None = None):
    """Run the toy deck with a copy of the toy audit given a [report] table (``report``: its lines) and more files."""
    changed = tmp_path / "toy_audit"
    shutil.copytree(TOY, changed)
    with (changed / "audit.toml").open("a", encoding="utf-8") as fh:
        fh.write(f"\n[report]\n{report}\n")
    for name, text in (files or {}).items():
        (changed / name).parent.mkdir(parents=True, exist_ok=True)
        (changed / name).write_text(text, encoding="utf-8")
    config = tmp_path / "site.toml"
    config.write_text(f"audits_path = [{json.dumps(str(changed))}]\n", encoding="utf-8")
    r = run_cli(
        "run", "--input", toy_run["out"].parent / "in", "--out", tmp_path / "out", "--config", config,
        "--site-timezone", SITE_TIMEZONE, "--no-validate", env=KEY,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()
    return r.stderr.splitlines()[-1], changed


def test_a_report_section_query_duckdb_cannot_run_is_one_line_naming_its_file(toy_run, tmp_path):
    """A section's report/<name>.sql naming a column its tables lack was exit 70, 'a bug in order-audit', with a
    traceback, after the whole run (the audit author's review). One line naming the file; nothing published."""
    files = {
        "report/extra.html": "<p>{{ section.rows|length }}</p>\n",
        "report/extra.sql": "SELECT no_such_column FROM toy_audit__mart_cases\n",
    }
    last, changed = _run_toy_with_report(toy_run, tmp_path, 'sections = ["extra"]', files)
    assert f"{changed / 'report' / 'extra.sql'}: DuckDB cannot run the section's query (Binder Error: " in last, last


NOTE = "<p>{{ note.rows|length }}</p>\n"  # a period note's partial: its rows come from period_note.sql
NO_INDEX_DAY = 'Binder Error: Referenced column "index_day" not found in FROM clause!'


@pytest.mark.parametrize(
    ("files", "named", "said"),
    [
        (
            {"report/verified_from.sql": "SELECT min(index_day) AS verified_from FROM toy_audit__mart_cases\n"},
            "verified_from.sql",
            f"DuckDB cannot run the look-back query ({NO_INDEX_DAY}); fix it",
        ),
        (
            {"report/period_note.html": NOTE, "report/period_note.sql": "SELECT index_day FROM toy_audit__mart_cases\n"},
            "period_note.sql",
            f"DuckDB cannot run the period note's query ({NO_INDEX_DAY}); fix it",
        ),
        # the period note is hospital-wide: no $department (nor any $parameter without verified_from.sql)
        (
            {"report/period_note.html": NOTE, "report/period_note.sql": "SELECT count(*) AS n FROM toy_audit__mart_cases "
             "WHERE $department IS NULL\n"},
            "period_note.sql",
            "DuckDB cannot run the period note's query (Invalid Input Error: Values were not provided for the following "
            "parameters: department); it may name no $parameter; fix it",
        ),
        # a $parameter the section's query is not given: a typo of $department
        (
            {"report/extra.html": "<p>{{ section.rows|length }}</p>\n",
             "report/extra.sql": "SELECT count(*) AS n FROM toy_audit__mart_cases WHERE $dept IS NULL\n"},
            "extra.sql",
            "DuckDB cannot run the section's query (Invalid Input Error: Values were not provided for the following "
            "parameters: dept); it may name $department only; fix it",
        ),
    ],
    ids=["verified_from", "period_note", "period_note_department", "section_parameter"],
)  # fmt: skip
def test_a_report_query_duckdb_cannot_run_is_one_line_naming_its_file(toy_run, tmp_path, files, named, said):
    """The look-back query (report/verified_from.sql) and the period note's naming a column their tables lack, and a
    section's or the period note's naming a $parameter it is not given, were exit 70, 'a bug in order-audit', with a
    traceback (the audit author's review). One line naming the file and DuckDB's first line; nothing published."""
    report = 'sections = ["extra"]' if "report/extra.html" in files else ""
    last, changed = _run_toy_with_report(toy_run, tmp_path, report, files)
    assert last == f"order-audit: error: {changed / 'report' / named}: {said}", last


@pytest.mark.parametrize(
    ("template", "said"),
    [
        (
            "<p>{{ section.rows|length }}</p>\n<p>{{ no_such.value }}</p>\n",
            "line 2: the audit's report template cannot be rendered (UndefinedError: 'no_such' is undefined); fix the template",
        ),
    ],
    ids=["undefined"],
)
def test_a_report_section_template_that_cannot_render_is_one_line_naming_its_file(toy_run, tmp_path, template, said):
    """A section's report/<name>.html naming what its context lacks, or not Jinja, was exit 70, 'a bug in
    order-audit', naming no file (the audit author's review). One line naming the file and line; nothing published."""
    files = {"report/extra.html": template}
    last, changed = _run_toy_with_report(toy_run, tmp_path, 'sections = ["extra"]', files)
    assert last.startswith(f"order-audit: error: {changed / 'report' / 'extra.html'}, {said}"), last


def test_a_report_template_jinja_cannot_read_makes_the_folder_not_ready_before_any_data(toy_run, tmp_path):
    """A template that is no Jinja was found as the report rendered, after the inputs were loaded, and `order-audit
    audits` called the folder ready (the audit author's review). It is found with the folder's other files: the
    folder is not ready, and a run no other audit can serve says so first, in one line naming the file and line."""
    files = {"report/extra.html": "<p>{% if %}</p>\n"}
    last, changed = _run_toy_with_report(toy_run, tmp_path, 'sections = ["extra"]', files)
    template = changed / "report" / "extra.html"
    said = f"{template}, line 1: the audit's report template cannot be read (TemplateSyntaxError: "
    assert last.startswith(f"order-audit: error: no audit can run: toy_audit: its folder is not ready: {said}"), last
    listed = run_cli("audits", "--config", tmp_path / "site.toml", env=KEY)
    assert f"NOT READY: {said}" in listed.stdout, listed.stdout


@pytest.mark.parametrize(
    ("report", "said"),
    [
        ('label_columns = ["no_such"]', "[report] label_columns names no_such, no column of the audit's"),
        # the measures' generated model reads it first: it names the manifest it is written from
        ('case_department = "no_such"', "audit.toml's measures and [report], over {sql}/toy_audit__int_audited_orders.sql and"),
        ('columns = { no_such = ["No such", 10, "none"] }', "[report.columns] names no_such, no column of the audit's"),
    ],
)
def test_a_report_setting_naming_a_column_the_marts_lack_is_one_line_naming_the_manifest(toy_run, tmp_path, report, said):
    """A label or workbook column the marts lack was left out without a word; a case department so named was exit
    70 (the audit author's review). Checked once the marts are built: one line naming audit.toml."""
    last, changed = _run_toy_with_report(toy_run, tmp_path, report)
    assert str(changed / "audit.toml") in last and said.format(sql=changed / "sql") in last, last
