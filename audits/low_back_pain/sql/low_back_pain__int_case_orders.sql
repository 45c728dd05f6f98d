-- The audited orders, each attached to one case. Audited: a case patient's lumbar imaging (study type
-- xr_spine, ct_spine or mri_spine covering region L or S in the code map: a complete-spine MRI images
-- the lumbar spine too) or a code in no map that is not in CPT form (it might be lumbar imaging; an
-- unmapped CPT code is no imaging of interest). An order with a date belongs to the case whose
-- window, index date + 0..audit_window_days site-local calendar days, holds its local date (the most
-- recent index should windows overlap, which the defaults never allow); one without a date to the
-- patient's most recent case. Each order carries what its flags read: its case's red flags and its own.
WITH auditable AS (
    SELECT o.*
    FROM low_back_pain__int_case_patient_orders AS o
    WHERE (o.is_mapped AND o.study_type IN ('xr_spine', 'ct_spine', 'mri_spine')
           AND (strpos(o.regions, 'L') > 0 OR strpos(o.regions, 'S') > 0))
       OR (NOT o.is_mapped AND NOT regexp_matches(o.order_code, '^[0-9]{4}[0-9A-Z]$'))
),
candidates AS (
    SELECT a.order_id, c.case_id, c.index_date
    FROM auditable AS a
    JOIN low_back_pain__int_cases AS c ON c.patient_id = a.patient_id
    CROSS JOIN low_back_pain__parameters AS prm
    WHERE a.ordered_local_date IS NULL
       OR (a.ordered_local_date >= c.index_date
           AND date_diff('day', c.index_date, a.ordered_local_date) <= prm.audit_window_days)
),
assigned AS (
    SELECT order_id, case_id
    FROM (
        SELECT order_id, case_id, row_number() OVER (PARTITION BY order_id ORDER BY index_date DESC) AS pick
        FROM candidates
    ) AS ranked
    WHERE pick = 1
),
groups AS (
    SELECT a.case_id, a.order_id, r.red_flag_group, r.group_order
    FROM assigned AS a
    JOIN low_back_pain__int_case_red_flags AS r ON r.case_id = a.case_id
    UNION
    SELECT a.case_id, a.order_id, r.red_flag_group, r.group_order
    FROM assigned AS a
    JOIN low_back_pain__int_order_red_flags AS r ON r.order_id = a.order_id
),
group_lists AS (
    SELECT case_id, order_id, string_agg(red_flag_group, '|' ORDER BY group_order) AS red_flag_groups
    FROM groups
    GROUP BY case_id, order_id
)
SELECT
    a.case_id,
    c.patient_id,
    c.patient_key,
    c.index_date,
    c.index_month,
    o.order_id,
    o.ordered_at,
    o.ordered_local_date,
    date_diff('day', c.index_date, o.ordered_local_date) AS days_since_index,
    o.order_code,
    o.order_name,
    o.study_type,
    o.modality,
    o.regions,
    o.contrast,
    o.ordering_department,
    o.ordering_provider_id,
    o.status,
    o.indication_codes,
    o.is_cancelled,
    o.is_mapped,
    c.case_id IN (SELECT case_id FROM low_back_pain__int_case_red_flags) AS is_complicated,
    o.order_id IN (SELECT order_id FROM low_back_pain__int_order_red_flags) AS has_own_red_flag,
    coalesce(g.red_flag_groups, '') AS red_flag_groups
FROM assigned AS a
JOIN auditable AS o ON o.order_id = a.order_id
JOIN low_back_pain__int_cases AS c ON c.case_id = a.case_id
LEFT JOIN group_lists AS g ON g.case_id = a.case_id AND g.order_id = a.order_id
