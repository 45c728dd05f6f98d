"""The model runner: dependencies from the parsed SQL, refusals, table or view, and the verdicts the
engine generates from an audit's registry."""

from __future__ import annotations

import shutil

import duckdb
import pytest
from conftest import ROOT

from pipeline import audits
from pipeline.errors import ConfigError
from pipeline.models import generated, runner
from pipeline.models.runner import Model

CSF = audits.load(ROOT / "audits" / "csf_leak")


def test_dependencies_come_from_the_parsed_sql_not_from_words():
    m = Model(
        "demo__int_x",
        None,
        """-- reads demo__int_cases (a comment: not a dependency)
        WITH demo__int_cases AS (SELECT 1 AS a)      -- a CTE that shadows a model: not a dependency
        SELECT 'demo__int_orders' AS note, * FROM demo__int_cases, stg_procedures AS p""",
        "demo",
    )
    assert m.reads == {"stg_procedures"}


def test_every_shipped_model_reads_only_what_something_provides():
    models = runner.core_models() + runner.audit_models(CSF)
    order = [m.name for m in runner.execution_order(models)]
    assert order.index("stg_patients") < order.index("stg_procedures") < order.index("csf_leak__int_index_procedures")
    assert (
        order.index("csf_leak__int_order_flags")
        < order.index("csf_leak__int_order_reasons")
        < order.index("csf_leak__int_order_verdicts")
    )


@pytest.mark.parametrize(
    ("sql", "audit", "message"),
    [
        ("SELECT * FROM demo__int_nothing", "demo", "reads demo__int_nothing, which no model, generated model or declared"),
        ("SELECT * FROM other__mart_cases", "demo", "a table of audit other; audit demo reads only its own"),
        ("SELECT * FROM demo__int_a", None, "a table of audit demo; a core model reads only its own"),
        ("SELECT * FROM demo__mart_b", "demo", "reads demo__mart_b (mart), a later layer than its own (int)"),
        ("DELETE FROM demo__int_a", "demo", "a model is one SELECT"),
        ("SELECT * FROM (", "demo", "cannot parse the SQL"),
    ],
)
def test_a_model_reading_what_nothing_provides_is_refused(sql, audit, message):
    name = "stg_x" if audit is None else "demo__int_x"
    models = [
        Model(name, None, sql, audit),
        Model("demo__int_a", None, "SELECT 1 AS a", "demo"),
        Model("demo__mart_b", None, "SELECT * FROM demo__int_a", "demo"),
        Model("other__mart_cases", None, "SELECT 1 AS c", "other"),
    ]
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        runner.execution_order(models)


def test_a_circle_is_refused():
    models = [
        Model("demo__int_a", None, "SELECT * FROM demo__int_b", "demo"),
        Model("demo__int_b", None, "SELECT * FROM demo__int_a", "demo"),
    ]
    with pytest.raises(ConfigError, match="in a circle"):
        runner.execution_order(models)


def test_table_or_view_by_layer_or_by_the_directive_of_the_leading_comments():
    assert Model("stg_a", None, "SELECT 1").materialisation == "VIEW"
    assert Model("demo__mart_a", None, "SELECT 1", "demo").materialisation == "TABLE"
    assert Model("demo__int_a", None, "-- what it is\n-- materialised: view\nSELECT 1", "demo").materialisation == "VIEW"
    # a directive after the SQL has started is a comment, not a setting
    assert Model("demo__int_a", None, "SELECT 1\n-- materialised: view", "demo").materialisation == "TABLE"


def test_generated_verdicts_follow_the_registry_and_the_engines_precedence(tmp_path):
    """A registry of four rules over a hand-made flags table: reasons, secondary reasons and explanations
    come from rules.csv in its order; the verdict from verdicts.csv's precedence."""
    folder = tmp_path / "demo"
    shutil.copytree(ROOT / "audits" / "csf_leak", folder, ignore=shutil.ignore_patterns("deck", "sql", "__pycache__"))
    (folder / "audit.toml").write_text(
        (folder / "audit.toml").read_text(encoding="utf-8").replace('id = "csf_leak"', 'id = "demo"'), encoding="utf-8"
    )
    (folder / "rules.csv").write_text(
        "rule_id,reason_code,label,verdict,flag_column,explanation,citation\n"
        "D-1,gone,Gone,excluded,is_gone,Gone.,cite A\n"
        "D-2,early,Too early,inappropriate,is_early,Too early.,cite B\n"
        "D-3,odd,Odd,inappropriate,has_odd,Odd.,cite C\n"
        "D-4,fine,Fine,appropriate,is_fine,Fine.,cite B\n",
        encoding="utf-8",
    )
    demo = audits.load(folder)
    con = duckdb.connect()
    con.execute("CREATE TABLE ref_verdicts AS SELECT * FROM read_csv(?)", [str(audits.VERDICTS_CSV)])
    con.execute(
        "CREATE TABLE demo__ref_rules AS SELECT row_number() OVER () AS rule_order, * FROM read_csv(?, all_varchar = true)",
        [str(folder / "rules.csv")],
    )
    con.execute("""CREATE TABLE demo__int_order_flags AS SELECT * FROM (VALUES
        ('c1', 'o1', false, true,  true,  false),
        ('c1', 'o2', true,  true,  false, true),
        ('c1', 'o3', false, false, false, true),
        ('c1', 'o4', false, false, false, false)) AS f(case_id, order_id, is_gone, is_early, has_odd, is_fine)""")
    models = {m.name: m for m in generated.models_for(demo)}
    for name in ("demo__int_order_reasons", "demo__int_order_verdicts"):
        con.execute(f"CREATE TABLE {name} AS {models[name].sql}")
    got = con.execute(
        "SELECT order_id, verdict, reasons, secondary_reasons, rule_ids, explanation, citations "
        "FROM demo__int_order_verdicts ORDER BY order_id"
    ).fetchall()
    assert got == [
        ("o1", "inappropriate", "early|odd", "", "D-2|D-3", "Too early. Odd.", "cite B || cite C"),
        ("o2", "excluded", "gone", "early|fine", "D-1", "Gone.", "cite A"),
        ("o3", "appropriate", "fine", "", "D-4", "Fine.", "cite B"),
    ]  # o4: no rule fired, no verdict (the audit's mart decides what that means)
