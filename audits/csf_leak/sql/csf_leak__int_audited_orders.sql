-- One row per audited order (every period), with its verdict explained.
SELECT
    o.order_id,
    o.case_id,
    pk.patient_key,
    replace(strftime(timezone('UTC', o.ordered_at), '%Y-%m-%d %H:%M:%S'), ' ', 'T') || 'Z' AS ordered_at,
    strftime(timezone(prm.site_timezone, o.ordered_at), '%Y-%m-%d %H:%M:%S') AS ordered_at_local,
    -- truncated to 0.01 h, never rounded up: 71.996 h must not read 72.00 beside a premature verdict
    -- (the inner round only removes binary noise: 87 min is 1.45 h, not 1.44)
    floor(round(o.hours_since_index * 100, 9)) / 100 AS hours_since_index,
    -- whole minutes, truncated: what the report prints (71 h 59 min), exact where 0.01 h is not
    CAST(floor(round(o.hours_since_index * 60, 9)) AS BIGINT) AS minutes_since_index,
    o.episode_number,
    o.order_code,
    o.order_name,
    o.study_type,
    o.effective_study_type,
    o.regions,
    o.contrast,
    o.ordering_department,
    o.ordering_provider_id,
    o.status,
    o.indication_codes,
    o.indication_text,
    v.verdict,
    v.reasons,
    v.secondary_reasons,
    v.explanation,
    v.citations,
    v.rule_ids,
    prm.rule_set_version,
    c.index_month AS case_index_month,
    replace(strftime(timezone('UTC', c.index_at), '%Y-%m-%d %H:%M:%S'), ' ', 'T') || 'Z' AS index_at,
    coalesce(strpos('|' || v.reasons || '|', '|premature|') > 0, false) AS is_premature
FROM csf_leak__int_order_facts AS o
JOIN csf_leak__int_cases AS c ON c.case_id = o.case_id
JOIN csf_leak__int_patient_keys AS pk ON pk.patient_id = o.patient_id
LEFT JOIN csf_leak__int_order_verdicts AS v ON v.case_id = o.case_id AND v.order_id = o.order_id
CROSS JOIN csf_leak__parameters AS prm
