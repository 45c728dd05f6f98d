-- One row per audited (case, order): one boolean per rule of rules.csv (its flag_column). The engine
-- turns them into reasons and one verdict (low_back_pain__int_order_reasons, _verdicts). The flags are
-- gated: exclusions first, then whether the order can be judged, then the clinical rule, so an order's
-- reasons always share one verdict.
WITH gated AS (
    SELECT
        o.*,
        o.is_complicated OR o.has_own_red_flag AS has_red_flag,
        o.is_cancelled OR o.is_complicated OR o.has_own_red_flag AS is_excluded
    FROM low_back_pain__int_case_orders AS o
),
judged AS (
    SELECT
        g.*,
        NOT g.is_excluded AND g.is_mapped AND g.ordered_at IS NOT NULL AS is_judged
    FROM gated AS g
)
SELECT
    j.case_id,
    j.order_id,
    coalesce(j.is_cancelled, false) AS is_cancelled,
    coalesce(j.has_red_flag, false) AS has_red_flag,
    coalesce(NOT j.is_mapped AND NOT j.is_excluded, false) AS is_unmapped_code,
    coalesce(j.ordered_at IS NULL AND NOT j.is_excluded, false) AS is_missing_time,
    coalesce(j.is_judged AND j.days_since_index <= prm.early_imaging_days, false) AS is_early_imaging,
    coalesce(j.is_judged AND j.days_since_index > prm.early_imaging_days
        AND j.days_since_index <= prm.audit_window_days, false) AS is_after_conservative_period
FROM judged AS j
CROSS JOIN low_back_pain__parameters AS prm
