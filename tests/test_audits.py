"""Audits as folders: discovery, manifest validation (one line naming the file), parameters, and which
audits a run does. Folders are written in tmp_path; nothing here runs the pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from conftest import ROOT, run_cli

from pipeline import audits
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.models import reference

CSF = ROOT / "audits" / "csf_leak"
CSF_01_CITATION = (
    "order-audit audit definition, exclusions: a cancelled order is excluded (no study was performed); its indication"
    " codes still count as leak evidence"
)


def _copy_csf(tmp_path: Path, name: str = "csf_leak") -> Path:
    """A copy of the shipped CSF-leak folder, to break one thing at a time."""
    folder = tmp_path / name
    shutil.copytree(CSF, folder, ignore=shutil.ignore_patterns("deck", "__pycache__"))
    return folder


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_shipped_audits_are_found_and_valid():
    found = {a.id: a for a in audits.discover()}
    assert "csf_leak" in found and "low_back_pain" in found
    csf = found["csf_leak"]
    assert csf.runnable, csf.problem
    assert csf.rule_set_version == "csf-leak-2026.11.0"
    assert csf.required_tables == ("procedures", "imaging_orders")
    assert csf.parameters["premature_hours"] == 72
    assert [m.id for m in csf.measures if m.headline] == [
        "first_imaging_right_study",
        "inappropriate_order_rate",
        "premature_order_rate",
    ]


def test_every_shipped_code_set_file_has_its_version_recorded():
    """run.json (and the report's "Inputs and run") record each code set's version from [code_sets]: an audit
    shipping value_sets.csv or code_map.csv declares both (the low back pain run recorded none: "code sets ;")."""
    for audit in audits.discover():
        shipped = {name for name in ("value_sets", "code_map") if (audit.folder / f"{name}.csv").is_file()}
        assert shipped and shipped <= set(audit.code_sets), (audit.id, audit.code_sets)


def test_extra_audits_come_from_the_environment_and_an_id_counts_once(tmp_path, monkeypatch):
    _copy_csf(tmp_path / "more")
    monkeypatch.setenv(audits.AUDITS_PATH_ENV, str(tmp_path / "more"))
    with pytest.raises(ConfigError, match="audit id csf_leak is also"):
        audits.discover()


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("audit.toml", 'id = "csf_leak"', 'id = "csf"', "must be the folder's name"),
        ("audit.toml", 'version = "2026.11.0"', "", "version is required"),
        ("audit.toml", 'id = "csf_leak"', 'colour = 1\nid = "csf_leak"', "unknown key(s) colour"),
        ("audit.toml", 'unit = "case"\nnum', 'unit = "patient"\nnum', "unit 'patient' must be one of order, case"),
        ("audit.toml", 'direction = "higher_is_better"', 'direction = "up"', "direction 'up' must be one of"),
        ("audit.toml", 'required = ["procedures", "imaging_orders"]', 'required = ["claims"]', "unknown table claims"),
        ("audit.toml", 'days_after_month = ["leak_evidence_days"', 'days_after_month = ["leak_days"', "neither a number nor"),
        ("audit.toml", 'procedures = ["patient_birth_date"', 'procedures = ["shoe_size"', "shoe_size not in the input contract"),
        ("audit.toml", 'at_local = "TIMESTAMP"', 'at_local = "DATETIME"', "ordered_at_local = 'DATETIME': a type"),
        ("audit.toml", "mart_cases = { index_at", "mart_case = { index_at", "[outputs.parquet_types] mart_case: name one of"),
        ("audit.toml", "[outputs.parquet_types]", "[outputs]\nzip = 1\n[outputs.parquet_types]", "[outputs]: unknown key(s) zip"),
        ("audit.toml", 'pencil_point = "Pencil-point"', 'pencil_point = " "', '[report] labels: a table of key = "words"'),
        (
            "audit.toml",
            'case_department = "first_imaging_department"',
            'label_columns = "needle_type"\ncase_department = "first_imaging_department"',
            "[report] label_columns must be a list of names",
        ),
        # an unknown funnel measure printed "Funnel position ()"; a misspelt style was a KeyError after the whole run
        (
            "audit.toml",
            'funnel_measure = "inappropriate_order_rate"',
            'funnel_measure = "inappropriate_rate"',
            "[report] funnel_measure = 'inappropriate_rate' is no measure of the audit (first_imaging_right_study, ",
        ),
        (
            "audit.toml",
            '(absolute time).", "hours"]',
            '(absolute time).", "hrs"]',
            "hours_since_index: style 'hrs' is not one of",
        ),
        (
            "audit.toml",
            'time_after_index = ["Time after procedure", 14,',
            'time_after_index = ["Time after procedure",',
            "write it as",
        ),
    ],
)
def test_a_broken_manifest_is_one_line_naming_the_file(tmp_path, file, old, new, message):
    folder = _copy_csf(tmp_path)
    _edit(folder / file, old, new)
    with pytest.raises(ConfigError) as err:
        audits.load(folder)
    assert str(folder / file) in err.value.message and message in err.value.message
    assert "\n" not in err.value.message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: _edit(f / "rules.csv", ",is_premature,", ",premature,"), "flag_column 'premature' must be a boolean column"),
        (
            lambda f: _edit(f / "rules.csv", ",inappropriate,is_premature,", ",wrong,is_premature,"),
            "verdict 'wrong' is not one of",
        ),
        (lambda f: _edit(f / "rules.csv", "is_contrast_only", "is_premature"), "flag_column is_premature is listed twice"),
        (
            lambda f: _edit(f / "rules.csv", ",Myelography (DSM or conventional) as the first study,", ", ,"),
            "line 15, column label: rule CSF-14 needs a readable label",
        ),
        (
            lambda f: _edit(f / "rules.csv", ",Myelography (DSM or conventional) as the first study,", f",{'DSM ' * 16},"),
            "line 15, column label: rule CSF-14 needs a readable label of at most 60 characters",
        ),
        (
            # a placeholder the rules' words cannot fill would print as '{premature_hour}' in every report
            lambda f: _edit(f / "rules.csv", "within {premature_hours} hours", "within {premature_hour} hours"),
            "line 7, column label: {premature_hour} is no parameter of the audit",
        ),
        (lambda f: (f / "sql" / "csf_leak__int_order_flags.sql").unlink(), "provides no csf_leak__int_order_flags"),
        (lambda f: (f / "sql" / "extra.sql").write_text("SELECT 1"), "is named csf_leak__<layer>_<name>.sql"),
        (lambda f: (f / "sql" / "csf_leak__tmp_x.sql").write_text("SELECT 1"), "starts with its layer"),
        (
            lambda f: _edit(f / "audit.toml", 'sections = ["timing", "risk"]', 'sections = ["timing", "nothing"]'),
            "has no template",
        ),
        (lambda f: _edit(f / "value_sets.csv", ",exact,", ",fuzzy,"), "match 'fuzzy' must be exact or prefix"),
        (
            # a verdict explained without its citation: the docs said every column is required, the check let it be
            lambda f: _edit(f / "rules.csv", f'"{CSF_01_CITATION}"', '" "'),
            "line 2: explanation and citation are required",
        ),
    ],
)
def test_a_folder_that_cannot_run_says_why_and_is_skipped_by_default(tmp_path, change, message):
    folder = _copy_csf(tmp_path)
    change(folder)
    audit = audits.load(folder)
    assert not audit.runnable and message in audit.problem, audit.problem
    plan = audits.plan([audit], [], {"procedures": set(), "imaging_orders": set()})
    assert plan.audits == [] and plan.skipped == [("csf_leak", f"its folder is not ready: {audit.problem}")]
    with pytest.raises(ConfigError, match="--audit csf_leak cannot run"):
        audits.plan([audit], ["csf_leak"], {"procedures": set(), "imaging_orders": set()})


def test_plan_skips_an_audit_whose_table_or_column_is_absent(tmp_path):
    csf = audits.load(CSF)
    needy = _copy_csf(tmp_path, "needs_setting")
    for path in [needy / "audit.toml", *needy.glob("*/*.sql")]:
        path.write_text(path.read_text(encoding="utf-8").replace("csf_leak", "needs_setting"), encoding="utf-8")
    for path in needy.glob("sql/csf_leak__*.sql"):
        path.rename(path.with_name(path.name.replace("csf_leak__", "needs_setting__")))
    _edit(needy / "audit.toml", "[inputs.required_columns]", '[inputs.required_columns]\ndiagnoses = ["setting"]')
    _edit(
        needy / "audit.toml",
        'required = ["procedures", "imaging_orders"]',
        'required = ["procedures", "imaging_orders", "diagnoses"]',
    )
    other = audits.load(needy)
    assert other.runnable, other.problem
    present = {"procedures": {"procedure_id"}, "imaging_orders": {"order_id"}, "diagnoses": {"patient_id"}}
    plan = audits.plan([csf, other], [], present)
    assert [a.id for a in plan.audits] == ["csf_leak"]
    assert plan.skipped == [("needs_setting", "the diagnoses table has no setting column")]
    plan = audits.plan([csf, other], [], {"imaging_orders": set(), "diagnoses": {"setting"}})
    assert plan.audits == [] and plan.missing_tables == {"procedures": ["csf_leak", "needs_setting"]}
    with pytest.raises(ConfigError, match="--audit nope: no such audit; known: csf_leak, needs_setting"):
        audits.plan([csf, other], ["nope"], present)


def test_parameters_from_the_config_override_the_manifest_and_are_checked(tmp_path):
    csf = audits.load(CSF)
    config = tmp_path / "site.toml"
    config.write_text("[audits.csf_leak]\npremature_hours = 48\n", encoding="utf-8")
    cfg = load_config(config)
    values = audits.parameters_for(csf, cfg.audits["csf_leak"])
    assert values["premature_hours"] == 48 and isinstance(values["premature_hours"], int)
    assert values["episode_hours"] == 24  # the manifest's default
    assert audits.parameters_for(csf, {"episode_hours": 1.5})["episode_hours"] == 1.5  # a whole number's default takes a real one
    with pytest.raises(ConfigError, match=r"\[audits.csf_leak\] premature_hour: unknown parameter; known: audit_window_days"):
        audits.parameters_for(csf, {"premature_hour": 1})
    with pytest.raises(ConfigError, match="expected a value like 72$"):
        audits.parameters_for(csf, {"premature_hours": "soon"})
    with pytest.raises(ConfigError, match=r"\[audits.nope\]: no audit nope"):
        audits.check_config([csf], {"nope": {}}, "site.toml")


def test_a_config_written_for_one_audit_says_where_its_settings_went(tmp_path):
    config = tmp_path / "old.toml"
    config.write_text("[case]\npremature_hours = 48\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[case\] moved: each audit's settings are under \[audits.<audit id>\]"):
        load_config(config)


def test_parameters_keep_the_number_the_manifest_writes(tmp_path):
    """`order-audit audits` printed the CSF-leak audit's whole numbers as 18.0: its manifest wrote them so, and the
    float went on into the parameters table (DOUBLE) and run.json. A whole number stays one from the manifest to the
    table; a real number keeps its decimals, and a site's whole number given for it is read as a real one."""
    r = run_cli("audits")
    assert r.returncode == 0, r.stderr
    (listed,) = [line for line in r.stdout.splitlines() if "min_age_years" in line and "premature_hours" in line]
    assert "min_age_years = 18, " in listed and "premature_hours = 72, " in listed and ".0" not in listed, listed
    con = duckdb.connect()
    reference._parameters_table(con, "csf_parameters", audits.parameters_for(audits.load(CSF), None))
    assert con.execute("SELECT typeof(min_age_years), typeof(premature_hours) FROM csf_parameters").fetchone() == (
        "BIGINT",
        "BIGINT",
    )
    folder = _copy_csf(tmp_path)
    _edit(folder / "audit.toml", "episode_hours = 24 ", "episode_hours = 24.5 ")
    real = audits.load(folder)
    assert real.parameters["episode_hours"] == 24.5
    assert audits.parameters_for(real, {"episode_hours": 6}) == real.parameters | {"episode_hours": 6.0}
    assert isinstance(audits.parameters_for(real, {"episode_hours": 6})["episode_hours"], float)


LBP = ROOT / "audits" / "low_back_pain"
KNOWN_TABLES = "known: src_diagnoses, src_imaging_orders, src_patients, src_procedures"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # a JSON mistake was JSONDecodeError's traceback mid-gate, exit 70
        ('"optional": true,', '"optional": tru,', "diagnoses.json, line 15, column 19: not JSON (Expecting value); fix the file"),
        # GX's ExpectationNotFoundError mid-gate, exit 70
        (
            '"type": "unexpected_rows_expectation"',
            '"type": "expect_unexpected_rows"',
            "diagnoses.json: check low_back_pain.diagnoses.setting.recorded: type 'expect_unexpected_rows' is no Great "
            "Expectations expectation (did you mean unexpected_rows_expectation?); fix its type",
        ),
        # a ValueError naming the file, as a traceback, exit 70
        (
            '"check_id": "low_back_pain.diagnoses.setting.recorded",',
            "",
            "diagnoses.json: table src_diagnoses, expectation 1: meta lacks check_id; every check's meta has check_id, "
            "severity, description, row_level",
        ),
        # a suite of a table no delivery holds was never applied, without a word
        (
            '"table": "src_diagnoses"',
            '"table": "src_diagnosis"',
            f"diagnoses.json: table 'src_diagnosis' is no input table ({KNOWN_TABLES}); fix its name",
        ),
        (
            '"check_id": "low_back_pain.diagnoses.position.recorded"',
            '"check_id": "low_back_pain.diagnoses.setting.recorded"',
            "diagnoses.json: check low_back_pain.diagnoses.setting.recorded is listed twice; each check id once",
        ),
    ],
    ids=["json", "type", "check_id", "table", "twice"],
)
def test_a_broken_suite_of_the_audit_is_one_line_naming_its_file(tmp_path, old, new, message):
    """An audit's expectations/*.json is read as the gate reads it when the folder is: a mistake in it makes the
    folder not ready (one line naming the file; `--audit` stops with exit 1) before any data is read."""
    folder = tmp_path / "low_back_pain"
    shutil.copytree(LBP, folder, ignore=shutil.ignore_patterns("deck", "__pycache__"))
    _edit(folder / "expectations" / "diagnoses.json", old, new)
    audit = audits.load(folder)
    assert audit.problem == f"{folder / 'expectations'}/{message}", audit.problem
    with pytest.raises(ConfigError, match="--audit low_back_pain cannot run: "):
        audits.plan([audit], ["low_back_pain"], {"diagnoses": set(), "imaging_orders": set()})


def test_a_suite_of_a_table_this_delivery_lacks_is_left_out_and_every_suite_is_checked_first(tmp_path, monkeypatch):
    """The gate applies an audit's suite only when the delivery holds its tables, as before; the engine's own suites
    are read through the same checks, before the gate's database is built."""
    from pipeline.quality import gate, validate

    lbp = audits.load(LBP)
    assert gate.input_suites(["imaging_orders"], [lbp]) == ["imaging_orders"]
    assert gate.input_suites(["imaging_orders", "diagnoses"], [lbp]) == [
        "imaging_orders",
        "diagnoses",
        str(LBP / "expectations" / "diagnoses.json"),
    ]
    engine = tmp_path / "expectations"
    shutil.copytree(validate.SUITES_DIR, engine)
    _edit(engine / "imaging_orders.json", '"suite":', '"suite" ')
    monkeypatch.setattr(validate, "SUITES_DIR", engine)
    with pytest.raises(ConfigError, match=r"imaging_orders.json, line 2, column 12: not JSON \(Expecting ':' delimiter\)"):
        gate.input_suites(["imaging_orders"], [])
