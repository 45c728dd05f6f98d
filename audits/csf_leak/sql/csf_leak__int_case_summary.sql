-- One row per case (every period): the index procedure, the evidence, what was ordered.
WITH judged AS (
    SELECT * FROM csf_leak__int_audited_orders WHERE verdict IN ('appropriate', 'inappropriate', 'review')
),
first_episode AS (
    SELECT
        case_id,
        bool_or(strpos('|' || reasons || '|', '|mri_complete_spine_wwo|') > 0) AS has_right_study,
        bool_or(verdict IN ('inappropriate', 'review')) AS has_flagged
    FROM judged
    WHERE episode_number = 1
    GROUP BY case_id
),
first_order AS (
    SELECT case_id, ordered_at, hours_since_index, ordering_department, ordering_provider_id,
           row_number() OVER (PARTITION BY case_id ORDER BY ordered_at, order_id) AS rn
    FROM judged
),
counts AS (
    SELECT
        case_id,
        count(*) AS n_orders,
        count(*) FILTER (WHERE verdict IN ('appropriate', 'inappropriate', 'review')) AS n_evaluated,
        count(*) FILTER (WHERE verdict = 'inappropriate') AS n_inappropriate,
        count(*) FILTER (WHERE verdict = 'review') AS n_review,
        count(*) FILTER (WHERE verdict = 'appropriate') AS n_appropriate,
        count(*) FILTER (WHERE verdict = 'excluded') AS n_excluded,
        count(*) FILTER (WHERE verdict = 'not_evaluable') AS n_not_evaluable
    FROM csf_leak__int_audited_orders
    GROUP BY case_id
)
SELECT
    c.case_id,
    pk.patient_key,
    c.index_procedure_id,
    c.index_code,
    replace(strftime(timezone('UTC', c.index_at), '%Y-%m-%d %H:%M:%S'), ' ', 'T') || 'Z' AS index_at,
    c.index_local_date,
    c.index_month,
    c.department,
    c.site,
    c.provider_id,
    c.age_years,
    c.needle_gauge,
    c.needle_type,
    c.attempts,
    c.patient_position,
    c.evidence_sources,
    replace(strftime(timezone('UTC', c.first_evidence_at), '%Y-%m-%d %H:%M:%S'), ' ', 'T') || 'Z' AS first_evidence_at,
    coalesce(n.n_orders, 0) AS n_orders,
    coalesce(n.n_evaluated, 0) AS n_evaluated,
    coalesce(n.n_inappropriate, 0) AS n_inappropriate,
    coalesce(n.n_review, 0) AS n_review,
    coalesce(n.n_appropriate, 0) AS n_appropriate,
    coalesce(n.n_excluded, 0) AS n_excluded,
    coalesce(n.n_not_evaluable, 0) AS n_not_evaluable,
    f.ordered_at AS first_imaging_at,
    f.hours_since_index AS hours_to_first_imaging,
    f.ordering_department AS first_imaging_department,
    f.ordering_provider_id AS first_imaging_provider_id,
    CASE WHEN fe.case_id IS NULL THEN NULL
         ELSE fe.has_right_study AND NOT fe.has_flagged END AS first_imaging_right_study
FROM csf_leak__int_cases AS c
JOIN csf_leak__int_patient_keys AS pk ON pk.patient_id = c.patient_id
LEFT JOIN counts AS n ON n.case_id = c.case_id
LEFT JOIN first_order AS f ON f.case_id = c.case_id AND f.rn = 1
LEFT JOIN first_episode AS fe ON fe.case_id = c.case_id
