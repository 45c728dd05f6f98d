"""Every model the runner executes (core, each audit folder's, and the ones the engine generates)
transpiles to Spark SQL and Trino with nothing the target cannot run: the deny-list on the target's
parsed SQL, and the SQL parses back in the target dialect (pipeline/models/dialects.py)."""

from __future__ import annotations

import pytest
import sqlglot
from conftest import ROOT

from pipeline import audits
from pipeline.models import dialects, runner


def _every_model() -> list:
    """(id, model or the error that kept an audit's models from being listed): a broken audit fails, never vanishes."""
    params = [pytest.param(m, id=m.name) for m in runner.core_models()]
    manifests = [*audits.search_paths()[0].glob(f"*/{audits.MANIFEST}"), *(ROOT / "tests").glob(f"*/{audits.MANIFEST}")]
    for folder in sorted(p.parent for p in manifests):
        try:
            models = runner.audit_models(audits.load(folder))
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            params.append(pytest.param(exc, id=f"{folder.name}:cannot-list-models"))
            continue
        params += [pytest.param(m, id=m.name) for m in models]
    return params


MODELS = _every_model()


def test_every_audit_folder_and_the_generated_models_are_covered():
    names = {p.id for p in MODELS}
    for folder in [*audits.search_paths()[0].glob(f"*/{audits.MANIFEST}"), *(ROOT / "tests").glob(f"*/{audits.MANIFEST}")]:
        audit_id = folder.parent.name
        assert f"{audit_id}__int_order_verdicts" in names or f"{audit_id}:cannot-list-models" in names
        assert f"{audit_id}__mart_metric_counts" in names or f"{audit_id}:cannot-list-models" in names
    assert "stg_procedures" in names and "csf_leak__int_imaging_episodes" in names and "toy_audit__mart_cases" in names


@pytest.mark.parametrize("target", dialects.TARGETS)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_runs_on_the_target(model, target):
    if isinstance(model, Exception):
        pytest.fail(f"the audit's models cannot be listed: {model}")
    out = dialects.check(model.sql, target)  # raises NotPortable naming each construct
    assert sqlglot.parse_one(out, read=target) is not None


# What sqlglot alone makes of the constructs: each must be caught on the target's SQL.
UNPORTABLE = [
    ("spark", "SELECT timezone(tz, t) FROM x", "timezone()"),
    ("trino", "SELECT timezone(tz, t) FROM x", "timezone()"),
    ("spark", "SELECT strftime(t, '%Y-%m-%dT%H:%M:%SZ') FROM x", "TZ read as fields"),
    ("spark", "SELECT upper(trim(unnest(string_split(a, '|')))) FROM x", "inside an expression"),
    ("spark", "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r", "WITH RECURSIVE"),
    ("trino", "SELECT contains(a, 'C') FROM x", "array test on Trino"),
    ("spark", "SELECT a, count(*) FROM x GROUP BY ALL", "GROUP BY ALL"),
    ("trino", "SELECT a, count(*) FROM x GROUP BY ALL", "GROUP BY ALL"),
    ("spark", "SELECT * EXCLUDE (a) FROM x", "* EXCLUDE"),
    ("trino", "SELECT * EXCLUDE (a) FROM x", "* EXCLUDE"),
    ("trino", "SELECT string_agg(a, '|' ORDER BY b) FILTER (WHERE c) FROM x", "takes no FILTER"),
    ("spark", "SELECT a FROM x ORDER BY a", "ORDER BY on the model"),
    ("trino", "SELECT a FROM x ORDER BY a", "ORDER BY on the model"),
    ("spark", "SELECT epoch(t) FROM x", "whole seconds"),
    ("spark", "SELECT hamming(a, b) FROM x", "sqlglot does not know"),
    ("trino", "SELECT error('x') FROM x", "error()"),
]


@pytest.mark.parametrize(("target", "sql", "message"), UNPORTABLE)
def test_the_deny_list_catches_what_sqlglot_passes_through(target, sql, message):
    raw = sqlglot.transpile(sql, read=dialects.SOURCE, write=target)[0]
    assert any(message in p for p in dialects.problems(raw, target)), raw


def test_sql_that_does_not_parse_on_the_target_is_refused():
    assert dialects.problems("SELECT a FROM x WHERE", "trino")[0].startswith("does not parse as trino SQL")


@pytest.mark.parametrize(
    ("target", "sql", "expected"),
    [
        ("spark", "SELECT timezone(p.tz, o.t) FROM o, p", "SELECT FROM_UTC_TIMESTAMP(o.t, p.tz) FROM o, p"),
        ("trino", "SELECT timezone(p.tz, o.t) FROM o, p", "SELECT CAST(AT_TIMEZONE(o.t, p.tz) AS TIMESTAMP) FROM o, p"),
        ("spark", "SELECT epoch(t) FROM x", "SELECT CAST(UNIX_MICROS(CAST(t AS TIMESTAMP)) AS DOUBLE) / 1000000 FROM x"),
        ("spark", "SELECT error('stop') FROM x", "SELECT RAISE_ERROR('stop') FROM x"),
        ("trino", "SELECT error('stop') FROM x", "SELECT FAIL('stop') FROM x"),
        (
            "trino",
            "SELECT string_agg(DISTINCT c, ' || ' ORDER BY c) FILTER (WHERE w) FROM x",
            "SELECT ARRAY_JOIN(ARRAY_DISTINCT(ARRAY_AGG(c ORDER BY c) FILTER(WHERE w)), ' || ') FROM x",
        ),
        ("trino", "SELECT string_agg(c, '|' ORDER BY r) FROM x", "SELECT ARRAY_JOIN(ARRAY_AGG(c ORDER BY r), '|') FROM x"),
        (
            "spark",
            "SELECT string_agg(c, '|' ORDER BY r) FILTER (WHERE w) FROM x",
            "SELECT LISTAGG(c, '|') WITHIN GROUP (ORDER BY r NULLS LAST) FILTER(WHERE w) FROM x",
        ),
    ],
)
def test_the_shims(target, sql, expected):
    assert dialects.check(sql, target) == expected


def test_distinct_string_agg_ordered_by_another_expression_is_refused_for_trino():
    with pytest.raises(dialects.NotPortable, match="orders by another expression"):
        dialects.transpile("SELECT string_agg(DISTINCT c, '|' ORDER BY r) FROM x", "trino")


def test_split_ctes_gives_each_cte_its_own_view_read_by_name():
    sql = "WITH a AS (SELECT 1 AS x), b AS (SELECT a.x FROM a JOIN a AS a2 USING (x)) SELECT timezone('UTC', t) AS t FROM b, a"
    parts = dialects.split_ctes("m", sql, "spark")
    assert parts == [
        ("m__cte_a", "SELECT 1 AS x", 3),
        ("m__cte_b", "SELECT a.x FROM m__cte_a AS a JOIN m__cte_a AS a2 USING (x)", 1),
        ("m", "SELECT FROM_UTC_TIMESTAMP(t, 'UTC') AS t FROM m__cte_b AS b, m__cte_a AS a", 0),
    ]
    assert dialects.split_ctes("n", "SELECT 1 AS x", "trino") == [("n", "SELECT 1 AS x", 0)]
