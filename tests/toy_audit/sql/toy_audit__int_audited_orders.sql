-- One row per audited order (every period), with its verdict from the engine's generated models.
SELECT
    o.order_id,
    c.case_id,
    pk.patient_key,
    replace(strftime(timezone('UTC', o.ordered_at), '%Y-%m-%d %H:%M:%S'), ' ', 'T') || 'Z' AS ordered_at,
    strftime(timezone(prm.site_timezone, o.ordered_at), '%Y-%m-%d %H:%M:%S') AS ordered_at_local,
    o.order_code,
    o.order_name,
    o.study_type,
    o.contrast,
    o.ordering_department,
    o.ordering_provider_id,
    o.status,
    v.verdict,
    v.reasons,
    v.secondary_reasons,
    v.explanation,
    v.citations,
    v.rule_ids,
    prm.rule_set_version,
    c.index_month AS case_index_month,
    replace(strftime(timezone('UTC', c.index_at), '%Y-%m-%d %H:%M:%S'), ' ', 'T') || 'Z' AS index_at
FROM toy_audit__int_orders AS o
JOIN toy_audit__int_cases AS c ON c.patient_id = o.patient_id
JOIN toy_audit__int_patient_keys AS pk ON pk.patient_id = o.patient_id
LEFT JOIN toy_audit__int_order_verdicts AS v ON v.case_id = c.case_id AND v.order_id = o.order_id
CROSS JOIN toy_audit__parameters AS prm
