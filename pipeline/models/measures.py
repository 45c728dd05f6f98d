"""The measure models the engine writes for an audit, from its manifest's ``[[measures]]`` and its registry.

``<id>__mart_metric_counts``: per month of the trend window (and ``all``, the run's months: every month with a
case, audited orders or none), per level
(overall, department, provider) and group, each measure's numerator and denominator. A measure counts
the rows of its unit (``order``: ``<id>__int_audited_orders``; ``case``: ``<id>__int_case_summary``)
where its ``denominator`` holds, and of those the rows where its ``numerator`` holds; a group has a
cell when it has a row in the denominator. Orders are grouped by the ordering department and
provider; cases by the columns ``[report] case_department`` / ``case_provider`` name (without them,
case measures are hospital-wide only). Each reason of the registry adds ``reason_<code>``: orders
whose reasons include the code, over the orders of its verdict's measure (``Audit.reason_measure``: the
audit's measure counting that verdict; without one, all audited orders for an exclusion, those not
excluded for a not-evaluable reason, evaluated orders for the rest).

``<id>__mart_metric_atoms``: the distinct ways a row of a unit sits in the measures' numerators and
denominators (an atom: the set of counts it adds 1 to). Every count of a cell is a sum of its atoms, so
they are how one count of a cell follows from others (the audited orders less the judged less the excluded
are the not-evaluable ones): the metrics feed keeps a withheld count from being worked out that way
(``pipeline.report.relations``).

``<id>__mart_department_provider_counts``: the headline measures of the period per department and
provider within it (the department pages' provider tables).
"""

from __future__ import annotations

from pipeline.audits import EVALUATED, verdicts
from pipeline.models.runner import Model
from pipeline.sqltext import ident, literal

NOT_RECORDED = "(not recorded)"


def _group(column: str | None) -> str:
    return f"coalesce(CAST({ident(column)} AS VARCHAR), {literal(NOT_RECORDED)})" if column else "NULL"


def _grouped(unit: str) -> str:
    """CTEs ``<unit>_rows`` (each row once per level: overall, department, provider) and ``<unit>_cells``
    (each row under its month, and again under period 'all' for the run's own months), from the CTE
    ``<unit>s``. Portable SQL: no ``* EXCLUDE`` (docs/SQL_PORTABILITY.md)."""
    return f"""{unit}_rows AS (
    SELECT 'overall' AS level, 'all' AS group_key, * FROM {unit}s
    UNION ALL SELECT 'department', cell_department, * FROM {unit}s
    UNION ALL SELECT 'provider', cell_provider, * FROM {unit}s
),
{unit}_cells AS (
    SELECT p.period, r.* FROM {unit}_rows AS r JOIN cell_periods AS p ON p.month = r.cell_month
),
"""


def case_columns(audit) -> tuple[str | None, str | None]:
    report = audit.manifest.get("report", {})
    return report.get("case_department"), report.get("case_provider")


def metric_counts(audit) -> Model:
    name = audit.model_name
    department, provider = case_columns(audit)
    cells = []
    for m in audit.measures:
        # a case without an attributed department or provider counts for the hospital only
        source = "order_cells" if m.unit == "order" else "case_cells"
        keyed = "" if m.unit == "order" else " AND group_key IS NOT NULL"
        cells.append(
            f"""    SELECT period, level, group_key, {literal(m.id)} AS measure_id,
           count(*) FILTER (WHERE ({m.numerator})) AS numerator, count(*) AS denominator
    FROM {source} WHERE ({m.denominator}){keyed} GROUP BY period, level, group_key"""
        )
    # a reason's share: its numerator from the orders matched to their reasons once (orders x reasons, then
    # each hit under its cells), its denominator from one count per cell for each distinct denominator of the
    # verdicts (the verdict's measure's, Audit.reason_denominator): not every cell's rows x every reason (12M
    # string tests at 120k audited orders)
    dens = list(dict.fromkeys(audit.reason_denominator(v) for v in verdicts()))
    den_of = {v: f"den_{dens.index(audit.reason_denominator(v))}" for v in verdicts()}

    def by_verdict(prefix: str) -> str:
        return "CASE r.verdict " + " ".join(f"WHEN {literal(v)} THEN {prefix}{d}" for v, d in den_of.items()) + " END"

    reason_den = by_verdict("d.")
    cells.append(
        f"""    SELECT d.period, d.level, d.group_key, 'reason_' || r.reason_code AS measure_id,
           coalesce(h.numerator, 0) AS numerator, {reason_den} AS denominator
    FROM reason_denominators AS d
    CROSS JOIN {name("ref_rules")} AS r
    LEFT JOIN reason_numerators AS h
      ON h.period = d.period AND h.level = d.level AND h.group_key = d.group_key AND h.reason_code = r.reason_code
    WHERE {reason_den} > 0"""
    )
    # each order with whether it is in each denominator, evaluated over its own columns (a measure's SQL names
    # them unqualified, and ref_rules has a verdict column of its own)
    in_dens = ", ".join(f"({d}) AS in_den_{i}" for i, d in enumerate(dens))
    den_counts = ",\n           ".join(f"count(*) FILTER (WHERE {d}) AS den_{i}" for i, d in enumerate(dens))
    reasons = f"""orders_in_dens AS (
    SELECT o.*, {in_dens} FROM orders AS o
),
reason_hits AS (
    SELECT o.*, r.reason_code
    FROM orders_in_dens AS o
    JOIN {name("ref_rules")} AS r
      ON strpos('|' || o.reasons || '|', '|' || r.reason_code || '|') > 0  -- as reason_in()
     AND {by_verdict("o.in_")}
),
{_grouped("reason_hit")}reason_numerators AS (
    SELECT period, level, group_key, reason_code, count(*) AS numerator
    FROM reason_hit_cells GROUP BY period, level, group_key, reason_code
),
reason_denominators AS (
    SELECT period, level, group_key,
           {den_counts}
    FROM order_cells GROUP BY period, level, group_key
),
"""
    sql = f"""-- Generated by the engine for audit {audit.id} from audit.toml's [[measures]] and rules.csv: numerators and
-- denominators of every measure, per month of the trend window and for the run's months ('all'), for
-- the hospital, per department and per provider. Rates and intervals are added in report/measure.py.
WITH per AS (SELECT * FROM audit_period),
-- a month counts when a case is indexed in it, with or without an audited order: the months of the orders alone
-- dropped a month whose episodes all went without imaging (the best a month can be) from 'all' and the trend,
-- while the log, the site index and the audit's own sections, which read the cases, counted it
unit_months AS (
    SELECT case_index_month AS month FROM {name("int_audited_orders")}
    UNION SELECT index_month FROM {name("int_case_summary")}
),
in_trend AS (
    SELECT DISTINCT month FROM unit_months, per
    WHERE month IS NOT NULL
      AND (per.last_month IS NULL OR month <= per.last_month)
      AND (per.trend_first_month IS NULL OR month >= per.trend_first_month)
),
in_period AS (
    SELECT month FROM in_trend, per WHERE (per.first_month IS NULL OR month >= per.first_month)
),
-- the cells a month's rows count in: the month itself, and 'all' when the month is in the run's period
cell_periods AS (
    SELECT month AS period, month FROM in_trend UNION ALL SELECT 'all', month FROM in_period
),
orders AS (
    SELECT o.*, o.case_index_month AS cell_month,
           {_group("ordering_department")} AS cell_department, {_group("ordering_provider_id")} AS cell_provider
    FROM {name("int_audited_orders")} AS o
    WHERE o.case_index_month IN (SELECT month FROM in_trend)
),
{_grouped("order")}{reasons}cases AS (
    SELECT c.*, c.index_month AS cell_month, {_group(department)} AS cell_department, {_group(provider)} AS cell_provider
    FROM {name("int_case_summary")} AS c
    WHERE c.index_month IN (SELECT month FROM in_trend)
),
{_grouped("case")}cells AS (
{chr(10).join(f"{c}{chr(10)}    UNION ALL" for c in cells[:-1])}
{cells[-1]}
)
SELECT period, level, group_key, measure_id, numerator, denominator FROM cells
"""
    return Model(name("mart_metric_counts"), None, sql, audit.id, made_from(audit))


def made_from(audit) -> str:
    """What the measure models are written from: an error building one names the files to look at, the models' own
    too (a column int_audited_orders lacks is its SQL's to add: the message had named the manifest alone, in words)."""
    # the models' files by their names (audits.model_files' shape, checked with the folder): no listing of the folder
    # for a line only an error prints
    over = [str(audit.sql_dir / f"{audit.model_name(m)}.sql") for m in ("int_audited_orders", "int_case_summary")]
    return f"{audit.folder / 'audit.toml'}'s measures and [report], over {' and '.join(over)}"


def reason_in(reason_code: str) -> str:
    """Whether an order's ``reasons`` (codes joined by '|') include the code: as ``mart_metric_counts`` matches them."""
    return f"strpos('|' || reasons || '|', {literal('|' + reason_code + '|')}) > 0"


def metric_atoms(audit) -> Model:
    """The distinct sets of counts a unit's row is in: ``d:<measure>`` (its denominator) and ``n:<measure>`` (its
    numerator), joined by '|' in the order the measures are declared, reasons' measures after the audit's. Over
    every row of the unit, not only the run's months: an atom seen anywhere is one the data can hold."""
    from pipeline.audits import check_rules

    name = audit.model_name
    members: dict[str, list[str]] = {"order": [], "case": []}

    def member(unit: str, measure_id: str, denominator: str, numerator: str) -> None:
        members[unit] += [
            f"CASE WHEN ({denominator}) THEN {literal('d:' + measure_id)} END",
            f"CASE WHEN ({denominator}) AND ({numerator}) THEN {literal('n:' + measure_id)} END",
        ]

    for m in audit.measures:
        member(m.unit, m.id, m.denominator, m.numerator)
    for r in check_rules(audit):  # reason codes checked as snake_case: the measure ids mart_metric_counts gives them
        member("order", "reason_" + r["reason_code"], audit.reason_denominator(r["verdict"]), reason_in(r["reason_code"]))
    sources = {"order": name("int_audited_orders"), "case": name("int_case_summary")}
    selects = [
        f"SELECT DISTINCT {literal(unit)} AS unit, concat_ws('|', {', '.join(parts)}) AS atom FROM {sources[unit]}"
        for unit, parts in members.items()
        if parts
    ]
    sql = (
        f"-- Generated by the engine for audit {audit.id}: the distinct sets of measure counts (d: denominator, n: numerator)\n"
        "-- a row of each unit adds to; the feed's check that no withheld count follows from the released ones of its cell.\n"
        + "\nUNION ALL\n".join(selects)
        + "\n"
    )
    return Model(name("mart_metric_atoms"), None, sql, audit.id, made_from(audit))


def department_provider_counts(audit) -> Model:
    """The period's headline measures per department and provider within it (the department pages)."""
    name = audit.model_name
    department, provider = case_columns(audit)
    parts = []
    for m in audit.measures:
        if not m.headline:
            continue
        if m.unit == "order":
            dept, prov, source = _group("ordering_department"), _group("ordering_provider_id"), name("mart_audited_orders")
        elif department:
            dept, prov, source = _group(department), _group(provider), name("mart_cases")
        else:
            continue  # a case measure without attribution is hospital-wide only
        parts.append(
            f"""SELECT {dept} AS department, {prov} AS provider_key, {literal(m.id)} AS measure_id,
       count(*) FILTER (WHERE ({m.numerator})) AS numerator, count(*) AS denominator
FROM {source} WHERE ({m.denominator}) GROUP BY {dept}, {prov}"""
        )
    if not parts:
        parts.append(
            "SELECT CAST(NULL AS VARCHAR) AS department, CAST(NULL AS VARCHAR) AS provider_key, "
            "CAST(NULL AS VARCHAR) AS measure_id, CAST(0 AS BIGINT) AS numerator, CAST(0 AS BIGINT) AS denominator WHERE false"
        )
    sql = (
        f"-- Generated by the engine for audit {audit.id}: its headline measures per department and provider of the period.\n"
        + "\nUNION ALL\n".join(parts)
        + "\n"
    )
    return Model(name("mart_department_provider_counts"), None, sql, audit.id, made_from(audit))


def department_summary(audit) -> Model:
    """Who the numbers belong to, per department of the period: orders it placed (by verdict), cases
    attributed to it (``[report] case_department``), and cases counted by ``[report] second_view_department``."""
    name = audit.model_name
    department, _ = case_columns(audit)
    second = audit.manifest.get("report", {}).get("second_view_department")
    by_case = (
        f"""SELECT {_group(department)} AS department, count(*) AS cases_attributed,
           count(*) FILTER (WHERE case_id IN (SELECT case_id FROM flagged)) AS cases_flagged
    FROM {name("mart_cases")} WHERE {ident(department)} IS NOT NULL GROUP BY 1"""
        if department
        else "SELECT CAST(NULL AS VARCHAR) AS department, 0 AS cases_attributed, 0 AS cases_flagged WHERE false"
    )
    by_second = (
        f"SELECT {_group(second)} AS department, count(*) AS cases_second_view FROM {name('mart_cases')} GROUP BY 1"
        if second
        else "SELECT CAST(NULL AS VARCHAR) AS department, 0 AS cases_second_view WHERE false"
    )
    sql = f"""-- Generated by the engine for audit {audit.id}: one row per department any output of the period names,
-- with what is attributed to it: orders by the ordering department, cases by [report] case_department,
-- and, as a second view only, cases by [report] second_view_department. Each column sums to the
-- hospital's total (cases without an attributed department are shown on a row of their own).
WITH by_order AS (
    SELECT {_group("ordering_department")} AS department,
           count(*) AS orders,
           count(*) FILTER (WHERE verdict <> 'excluded') AS orders_not_excluded,
           count(*) FILTER (WHERE {EVALUATED}) AS orders_evaluated,
           count(*) FILTER (WHERE verdict = 'inappropriate') AS orders_inappropriate,
           count(*) FILTER (WHERE verdict = 'review') AS orders_review
    FROM {name("mart_audited_orders")} GROUP BY 1
),
flagged AS (SELECT DISTINCT case_id FROM {name("mart_audited_orders")} WHERE verdict IN ('inappropriate', 'review')),
by_case AS (
    {by_case}
),
by_second AS (
    {by_second}
),
departments AS (
    SELECT department FROM by_order UNION SELECT department FROM by_case UNION SELECT department FROM by_second
)
SELECT d.department,
       coalesce(o.orders, 0) AS orders,
       coalesce(o.orders_not_excluded, 0) AS orders_not_excluded,
       coalesce(o.orders_evaluated, 0) AS orders_evaluated,
       coalesce(o.orders_inappropriate, 0) AS orders_inappropriate,
       coalesce(o.orders_review, 0) AS orders_review,
       coalesce(c.cases_attributed, 0) AS cases_attributed,
       coalesce(c.cases_flagged, 0) AS cases_flagged,
       coalesce(s.cases_second_view, 0) AS cases_second_view
FROM departments AS d
LEFT JOIN by_order AS o USING (department)
LEFT JOIN by_case AS c USING (department)
LEFT JOIN by_second AS s USING (department)
"""
    return Model(name("mart_department_summary"), None, sql, audit.id, made_from(audit))


def models_for(audit) -> list[Model]:
    return [metric_counts(audit), metric_atoms(audit), department_provider_counts(audit), department_summary(audit)]
