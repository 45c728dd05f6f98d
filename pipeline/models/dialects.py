"""The models' SQL for other engines: DuckDB source transpiled with sqlglot to Spark SQL or Trino.

The models are written once, in DuckDB SQL, in the portable subset docs/SQL_PORTABILITY.md lists.
A few DuckDB functions have no same-named counterpart that sqlglot maps right; ``transpile`` rewrites
them per target (the shims), and ``problems`` names every construct of the result the target cannot
run or would run with another meaning (a deny-list checked on the target's parsed SQL), so a model
that parses but would be wrong is refused rather than trusted.

Engine settings the shims assume: the session time zone is UTC (Spark ``spark.sql.session.timeZone``),
so a TIMESTAMP holds the UTC instant and ``timezone(tz, ts)`` gives the site's wall clock.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp

SOURCE = "duckdb"
TARGETS = ("spark", "trino")

# Functions sqlglot does not know (it passes them through by name) that the target does have, with the
# meaning the models use. Any other unknown function in a transpiled model is refused.
KNOWN_FUNCTIONS = {
    "spark": {"from_utc_timestamp", "raise_error", "unix_micros"},
    "trino": {"fail", "at_timezone"},
}
# Functions the target has under the same name with another meaning (Trino: contains is an array test).
DENIED_FUNCTIONS = {
    "spark": {"timezone", "epoch", "epoch_us", "epoch_ms", "error", "strftime", "string_split", "list_contains"},
    "trino": {"timezone", "epoch", "epoch_us", "epoch_ms", "error", "strftime", "string_split", "list_contains", "contains"},
}
# Spark datetime pattern letters the models may use; any other unquoted letter (T, Z, ...) is read as a field
SPARK_PATTERN_LETTERS = set("yMdHms")


class NotPortable(ValueError):
    """A model uses a construct the target engine cannot run (or would run with another meaning)."""


def _timezone(node: exp.Expression, target: str) -> exp.Expression:
    """``timezone(tz, ts)``: the wall-clock TIMESTAMP of the instant ``ts`` in zone ``tz``."""
    if not (isinstance(node, exp.Anonymous) and node.name.lower() == "timezone" and len(node.expressions) == 2):
        return node
    tz, ts = node.expressions
    if target == "spark":
        return exp.Anonymous(this="from_utc_timestamp", expressions=[ts.copy(), tz.copy()])
    return exp.Cast(this=exp.AtTimeZone(this=ts.copy(), zone=tz.copy()), to=exp.DataType.build("TIMESTAMP"))


def _epoch(node: exp.Expression, target: str) -> exp.Expression:
    """``epoch(ts)``: seconds since 1970 as a DOUBLE with the fraction (Spark's unix_timestamp drops it);
    a DATE counts from its midnight UTC, as in DuckDB (Spark's unix_micros takes only a TIMESTAMP)."""
    if not isinstance(node, exp.TimeToUnix) or target != "spark":
        return node
    instant = exp.Cast(this=node.this.copy(), to=exp.DataType.build("TIMESTAMP"))
    micros = exp.Cast(this=exp.Anonymous(this="unix_micros", expressions=[instant]), to=exp.DataType.build("DOUBLE"))
    return exp.Div(this=micros, expression=exp.Literal.number(1000000))


def _error(node: exp.Expression, target: str) -> exp.Expression:
    """``error(message)``: stop the query with the message."""
    if not (isinstance(node, exp.Anonymous) and node.name.lower() == "error"):
        return node
    return exp.Anonymous(this="raise_error" if target == "spark" else "fail", expressions=[e.copy() for e in node.expressions])


def _ordered_string_agg(node: exp.Expression, target: str) -> exp.Expression:
    """``string_agg([DISTINCT] x, sep ORDER BY k) [FILTER (WHERE c)]`` where the target's listagg fails:

    * Trino (listagg takes no FILTER): ``array_join([array_distinct(]array_agg(x ORDER BY k) FILTER (WHERE c)[)], sep)``;
      NULL over no rows, as string_agg; array_join skips NULL elements, as string_agg skips NULL values.
    * Spark, DISTINCT only (Spark 4.3's listagg DISTINCT beside other aggregates fails in its optimizer,
      RewriteDistinctAggregates): ``array_join(array_sort(array_distinct(collect_list(x) FILTER (WHERE c))), sep)``,
      NULL when nothing is collected (collect_list skips NULLs and gives an empty array).
    """
    agg, where = (node.this, node.expression) if isinstance(node, exp.Filter) else (node, None)
    if not isinstance(agg, exp.GroupConcat) or (where is None and isinstance(node.parent, exp.Filter)):
        return node
    value, order = agg.this, None
    if isinstance(value, exp.Order):
        value, order = value.this, value
    distinct = isinstance(value, exp.Distinct)
    if distinct:
        (value,) = value.expressions
        if order is not None and [o.this for o in order.expressions] != [value]:
            what = f"string_agg(DISTINCT {value.sql(SOURCE)} ORDER BY ...)"
            raise NotPortable(f"{what} orders by another expression than the value")
    separator = (agg.args.get("separator") or exp.Literal.string(",")).sql(target)
    keep = f" FILTER(WHERE {where.this.sql(target)})" if where is not None else ""
    if target == "trino":
        inner = value.sql(target)
        if order is not None:
            inner += " ORDER BY " + ", ".join(o.sql(target) for o in order.expressions)
        array = f"ARRAY_AGG({inner}){keep}"
        if distinct:
            array = f"ARRAY_DISTINCT({array})"
        return sqlglot.parse_one(f"ARRAY_JOIN({array}, {separator})", read=target)
    if target == "spark" and distinct:
        collected = f"COLLECT_LIST({value.sql(target)}){keep}"
        joined = f"ARRAY_JOIN(ARRAY_SORT(ARRAY_DISTINCT({collected})), {separator})"
        return sqlglot.parse_one(f"CASE WHEN SIZE({collected}) = 0 THEN NULL ELSE {joined} END", read=target)
    return node


SHIMS = (_timezone, _epoch, _error, _ordered_string_agg)


def transpile(sql: str, target: str) -> str:
    """One model's SELECT (DuckDB SQL) as the target engine's SQL, shims applied; comments dropped."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; one of {', '.join(TARGETS)}")
    tree = sqlglot.parse_one(sql, read=SOURCE)
    for shim in SHIMS:
        tree = tree.transform(shim, target)
    return tree.sql(dialect=target, comments=False)


def split_ctes(name: str, sql: str, target: str) -> list[tuple[str, str, int]]:
    """The model as a sequence of statements for an engine that inlines common table expressions
    (Spark does: the episode model's doubling passes then plan each pass's inputs 2^k times): each
    top-level CTE becomes ``<name>__cte_<cte>`` (reads of it renamed), the model itself last.
    Returns (view name, target SQL, times the view is read): a view read more than once is worth
    materialising."""
    tree = sqlglot.parse_one(sql, read=SOURCE)
    for shim in SHIMS:
        tree = tree.transform(shim, target)
    with_ = tree.args.get("with_") or tree.args.get("with")
    if with_ is None:
        return [(name, tree.sql(dialect=target, comments=False), 0)]
    renamed = {cte.alias_or_name: f"{name}__cte_{cte.alias_or_name}" for cte in with_.expressions}
    parts = [(renamed[cte.alias_or_name], cte.this) for cte in with_.expressions]
    tree.set("with_" if "with_" in tree.args else "with", None)
    parts.append((name, tree))
    reads = dict.fromkeys(renamed.values(), 0)
    out = []
    for view, query in parts:
        for table in query.find_all(exp.Table):
            if table.name in renamed and not table.args.get("db"):
                reads[renamed[table.name]] += 1
                if not table.alias:  # columns may name the CTE: keep its name as the alias
                    table.set("alias", exp.TableAlias(this=exp.to_identifier(table.name)))
                table.set("this", exp.to_identifier(renamed[table.name]))
        out.append((view, query))
    return [(view, query.sql(dialect=target, comments=False), reads.get(view, 0)) for view, query in out]


def _function_name(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return None


def _spark_pattern(node: exp.TimeToStr) -> str:
    """The pattern literal as Spark reads it (the parsed node holds it in strftime form)."""
    match = re.search(r"'((?:[^']|'')*)'\)$", node.sql("spark"))
    return match.group(1).replace("''", "'") if match else ""


def _unquoted_letters(pattern: str) -> set[str]:
    return {c for c in re.sub(r"'[^']*'", "", pattern) if c.isalpha()}


def problems(target_sql: str, target: str) -> list[str]:
    """Every construct of ``target_sql`` (already in the target's dialect) the target cannot run as the
    models mean it; empty when the SQL parses back in the target dialect and nothing is denied."""
    try:
        tree = sqlglot.parse_one(target_sql, read=target)
    except sqlglot.errors.ParseError as exc:
        return [f"does not parse as {target} SQL: {str(exc).splitlines()[0]}"]
    found = []
    for node in tree.walk():
        name = _function_name(node)
        if name in DENIED_FUNCTIONS[target]:
            found.append(f"{name}(): not on {target} (or another meaning there)")
        elif isinstance(node, exp.Anonymous) and name not in KNOWN_FUNCTIONS[target]:
            found.append(f"{name}(): a function sqlglot does not know; unknown on {target}")
        if isinstance(node, exp.With) and node.args.get("recursive"):
            found.append("WITH RECURSIVE")
        if isinstance(node, exp.Group) and node.args.get("all"):
            found.append("GROUP BY ALL")
        if isinstance(node, exp.Star) and (node.args.get("except_") or node.args.get("replace")):
            found.append("* EXCLUDE / * REPLACE")
        if isinstance(node, (exp.Explode, exp.Unnest)) and not isinstance(node.parent, (exp.Lateral, exp.Join, exp.From)):
            found.append(f"{node.sql(target)[:40]}: a set-returning function inside an expression")
        if target == "spark" and isinstance(node, (exp.TimeToUnix, exp.StrToUnix)):
            found.append("unix_timestamp(): whole seconds on Spark (epoch keeps the fraction)")
        if target == "spark" and isinstance(node, exp.TimeToStr):
            pattern = _spark_pattern(node)
            letters = _unquoted_letters(pattern) - SPARK_PATTERN_LETTERS
            if letters:
                found.append(f"date_format pattern {pattern!r}: {''.join(sorted(letters))} read as fields")
        if target == "trino" and isinstance(node, exp.ArrayContains):
            found.append("contains(): an array test on Trino (strings: strpos(s, x) > 0)")
        if target == "trino" and isinstance(node, exp.Filter) and isinstance(node.this, exp.GroupConcat):
            found.append("listagg(...) FILTER: Trino's listagg takes no FILTER")
    if isinstance(tree, exp.Query) and tree.args.get("order"):
        found.append("ORDER BY on the model: engines do not keep a table's row order (order at write time)")
    return found


def check(sql: str, target: str) -> str:
    """``transpile`` that raises NotPortable naming every problem of the result."""
    out = transpile(sql, target)
    found = problems(out, target)
    if found:
        raise NotPortable("; ".join(dict.fromkeys(found)))
    return out
