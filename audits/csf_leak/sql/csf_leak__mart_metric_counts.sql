-- Numerators and denominators of every measure, per month, for the whole site and per
-- department and ordering provider. Rates and intervals are added in measure.py.
-- Months: the trend window ending with the run's last month (a monthly report shows its
-- trend); period 'all' sums the run's own months.
WITH per AS (SELECT * FROM audit_period),
in_trend AS (
    SELECT DISTINCT case_index_month AS month FROM csf_leak__int_audited_orders, per
    WHERE (per.last_month IS NULL OR case_index_month <= per.last_month)
      AND (per.trend_first_month IS NULL OR case_index_month >= per.trend_first_month)
),
in_period AS (
    SELECT month FROM in_trend, per
    WHERE (per.first_month IS NULL OR month >= per.first_month)
),
orders AS (
    SELECT
        o.case_index_month, o.ordering_department, o.verdict, o.reasons, o.is_premature,
        o.verdict IN ('appropriate', 'inappropriate', 'review') AS is_evaluated,
        coalesce(o.ordering_provider_id, '(not recorded)') AS provider_key
    FROM csf_leak__int_audited_orders AS o
    WHERE o.case_index_month IN (SELECT month FROM in_trend)
),
order_groups AS (
    SELECT case_index_month AS period, 'overall' AS level, 'all' AS group_key, verdict, reasons, is_premature, is_evaluated
    FROM orders
    UNION ALL SELECT case_index_month, 'department', ordering_department, verdict, reasons, is_premature, is_evaluated FROM orders
    UNION ALL SELECT case_index_month, 'provider', provider_key, verdict, reasons, is_premature, is_evaluated FROM orders
),
order_groups_all AS (
    SELECT period, level, group_key, verdict, reasons, is_premature, is_evaluated FROM order_groups
    UNION ALL SELECT 'all', level, group_key, verdict, reasons, is_premature, is_evaluated FROM order_groups
    WHERE period IN (SELECT month FROM in_period)
),
cases AS (
    SELECT
        index_month AS period,
        coalesce(first_imaging_department, '(not recorded)') AS department,
        coalesce(first_imaging_provider_id, '(not recorded)') AS provider_key,
        first_imaging_right_study
    FROM csf_leak__int_case_summary
    WHERE first_imaging_right_study IS NOT NULL
      AND index_month IN (SELECT month FROM in_trend)
),
case_groups AS (
    SELECT period, 'overall' AS level, 'all' AS group_key, first_imaging_right_study FROM cases
    UNION ALL SELECT period, 'department', department, first_imaging_right_study FROM cases
    UNION ALL SELECT period, 'provider', provider_key, first_imaging_right_study FROM cases
),
case_groups_all AS (
    SELECT period, level, group_key, first_imaging_right_study FROM case_groups
    UNION ALL SELECT 'all', level, group_key, first_imaging_right_study FROM case_groups
    WHERE period IN (SELECT month FROM in_period)
),
order_measures AS (
    SELECT period, level, group_key, 'inappropriate_order_rate' AS measure_id,
           count(*) FILTER (WHERE verdict = 'inappropriate') AS numerator,
           count(*) FILTER (WHERE is_evaluated) AS denominator
    FROM order_groups_all GROUP BY period, level, group_key
    UNION ALL
    SELECT period, level, group_key, 'premature_order_rate',
           count(*) FILTER (WHERE is_evaluated AND is_premature), count(*) FILTER (WHERE is_evaluated)
    FROM order_groups_all GROUP BY period, level, group_key
    UNION ALL
    SELECT period, level, group_key, 'review_order_rate',
           count(*) FILTER (WHERE verdict = 'review'), count(*) FILTER (WHERE is_evaluated)
    FROM order_groups_all GROUP BY period, level, group_key
    UNION ALL
    SELECT period, level, group_key, 'not_evaluable_rate',
           count(*) FILTER (WHERE verdict = 'not_evaluable'), count(*) FILTER (WHERE verdict <> 'excluded')
    FROM order_groups_all GROUP BY period, level, group_key
),
reason_measures AS (
    SELECT
        g.period, g.level, g.group_key, 'reason_' || r.reason_code AS measure_id,
        count(*) FILTER (WHERE strpos('|' || g.reasons || '|', '|' || r.reason_code || '|') > 0) AS numerator,
        -- the denominator of the reason's verdict measure: evaluated orders for judged reasons,
        -- orders not excluded for not-evaluable reasons (as not_evaluable_rate), all audited
        -- orders for exclusion reasons
        CASE WHEN r.verdict = 'excluded' THEN count(*)
             WHEN r.verdict = 'not_evaluable' THEN count(*) FILTER (WHERE g.verdict <> 'excluded')
             ELSE count(*) FILTER (WHERE g.is_evaluated) END AS denominator
    FROM order_groups_all AS g
    CROSS JOIN csf_leak__ref_rules AS r
    GROUP BY g.period, g.level, g.group_key, r.reason_code, r.verdict
),
case_measures AS (
    SELECT period, level, group_key, 'first_imaging_right_study' AS measure_id,
           count(*) FILTER (WHERE first_imaging_right_study) AS numerator, count(*) AS denominator
    FROM case_groups_all GROUP BY period, level, group_key
)
SELECT period, level, group_key, measure_id, numerator, denominator FROM order_measures
UNION ALL SELECT period, level, group_key, measure_id, numerator, denominator FROM reason_measures
UNION ALL SELECT period, level, group_key, measure_id, numerator, denominator FROM case_measures
