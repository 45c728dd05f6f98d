-- One row per case (every period): the episode, its red flags, its audited orders and its outcome.
-- Outcome, in this order: excluded (complicated); early_imaging (an order judged early: a known early
-- study); not_evaluable (an order that could not be judged could hide early imaging: it has no date,
-- or its day is 0..early_imaging_days); no_early_imaging otherwise, also without any audited order or
-- when the only early order was cancelled (no study was done). An uncomplicated episode indexed before the
-- orders held (int_orders_held) is not_evaluable whatever its orders: its early-imaging window begins where no
-- order is held, so neither outcome can be seen (is_window_before_orders says why; DESIGN.md section 8). The
-- first imaging: the earliest dated audited order that was not cancelled.
WITH counts AS (
    SELECT
        case_id,
        count(*) AS n_orders,
        count(*) FILTER (WHERE verdict = 'inappropriate') AS n_early_imaging,
        count(*) FILTER (WHERE verdict = 'appropriate') AS n_after_conservative,
        count(*) FILTER (WHERE verdict = 'excluded') AS n_excluded,
        count(*) FILTER (WHERE verdict = 'not_evaluable') AS n_not_evaluable,
        count(*) FILTER (WHERE verdict = 'not_evaluable'
                          AND (days_since_index IS NULL OR days_since_index <= prm.early_imaging_days))
            AS n_hiding_early
    FROM low_back_pain__int_audited_orders
    CROSS JOIN low_back_pain__parameters AS prm
    GROUP BY case_id
),
first_imaging AS (
    SELECT
        case_id, ordered_local_date, modality,
        row_number() OVER (PARTITION BY case_id ORDER BY ordered_at, order_id) AS pick
    FROM low_back_pain__int_audited_orders
    WHERE ordered_at IS NOT NULL AND coalesce(status, '') <> 'cancelled'
),
red_flags AS (
    SELECT case_id, string_agg(red_flag_group, '|' ORDER BY group_order) AS red_flag_groups
    FROM low_back_pain__int_case_red_flags
    GROUP BY case_id
),
judged AS (
    SELECT
        c.*,
        coalesce(r.red_flag_groups, '') AS red_flag_groups,
        coalesce(n.n_orders, 0) AS n_orders,
        coalesce(n.n_early_imaging, 0) AS n_early_imaging,
        coalesce(n.n_after_conservative, 0) AS n_after_conservative,
        coalesce(n.n_excluded, 0) AS n_excluded,
        coalesce(n.n_not_evaluable, 0) AS n_not_evaluable,
        coalesce(c.index_date < h.orders_held_from, true) AS is_window_before_orders,
        CASE
            WHEN r.case_id IS NOT NULL THEN 'excluded'
            WHEN coalesce(c.index_date < h.orders_held_from, true) THEN 'not_evaluable'
            WHEN coalesce(n.n_early_imaging, 0) > 0 THEN 'early_imaging'
            WHEN coalesce(n.n_hiding_early, 0) > 0 THEN 'not_evaluable'
            ELSE 'no_early_imaging'
        END AS outcome,
        f.ordered_local_date AS first_imaging_date,
        f.modality AS first_imaging_modality
    FROM low_back_pain__int_cases AS c
    CROSS JOIN low_back_pain__int_orders_held AS h
    LEFT JOIN red_flags AS r ON r.case_id = c.case_id
    LEFT JOIN counts AS n ON n.case_id = c.case_id
    LEFT JOIN first_imaging AS f ON f.case_id = c.case_id AND f.pick = 1
)
SELECT
    j.case_id,
    j.patient_key,
    j.index_date,
    j.index_month,
    replace(strftime(timezone('UTC', j.index_at), '%Y-%m-%d %H:%M:%S'), ' ', 'T') || 'Z' AS index_at,
    j.index_setting,
    j.index_diagnosis_code,
    j.age_years,
    j.red_flag_groups <> '' AS is_complicated,
    j.red_flag_groups,
    j.n_orders,
    j.n_early_imaging,
    j.n_after_conservative,
    j.n_excluded,
    j.n_not_evaluable,
    j.is_window_before_orders,
    j.outcome,
    CASE j.outcome WHEN 'early_imaging' THEN true WHEN 'no_early_imaging' THEN false END AS has_early_imaging,
    j.first_imaging_date,
    j.first_imaging_modality
FROM judged AS j
