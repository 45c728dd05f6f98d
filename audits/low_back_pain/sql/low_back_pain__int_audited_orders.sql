-- One row per audited order (every period), with its verdict explained: what
-- low_back_pain__mart_audited_orders lists for the period.
SELECT
    o.order_id,
    o.case_id,
    o.patient_key,
    o.index_date,
    replace(strftime(timezone('UTC', c.index_at), '%Y-%m-%d %H:%M:%S'), ' ', 'T') || 'Z' AS index_at,
    replace(strftime(timezone('UTC', o.ordered_at), '%Y-%m-%d %H:%M:%S'), ' ', 'T') || 'Z' AS ordered_at,
    strftime(timezone(prm.site_timezone, o.ordered_at), '%Y-%m-%d %H:%M:%S') AS ordered_at_local,
    o.ordered_local_date,
    o.days_since_index,
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
    o.red_flag_groups,
    v.verdict,
    v.reasons,
    v.secondary_reasons,
    v.explanation,
    v.citations,
    v.rule_ids,
    prm.rule_set_version,
    o.index_month AS case_index_month
FROM low_back_pain__int_case_orders AS o
JOIN low_back_pain__int_cases AS c ON c.case_id = o.case_id
LEFT JOIN low_back_pain__int_order_verdicts AS v ON v.case_id = o.case_id AND v.order_id = o.order_id
CROSS JOIN low_back_pain__parameters AS prm
