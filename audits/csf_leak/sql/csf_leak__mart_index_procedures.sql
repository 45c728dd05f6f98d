-- One row per index procedure of the period (case or not): the denominator of leak rates
-- by risk factor.
SELECT
    a.procedure_id,
    pk.patient_key,
    strftime(a.performed_local_date, '%Y-%m') AS index_month,
    a.procedure_code,
    a.department,
    a.needle_gauge,
    a.needle_type,
    a.attempts,
    a.patient_position,
    a.age_years,
    coalesce(a.is_adult, false) AS is_adult,
    a.is_adult IS NULL AS is_age_unknown,
    a.has_leak_evidence,
    a.has_late_evidence_only,
    a.is_case
FROM csf_leak__int_index_assessment AS a
JOIN csf_leak__int_patient_keys AS pk ON pk.patient_id = a.patient_id
CROSS JOIN audit_period AS per
WHERE (per.first_month IS NULL OR strftime(a.performed_local_date, '%Y-%m') >= per.first_month)
  AND (per.last_month IS NULL OR strftime(a.performed_local_date, '%Y-%m') <= per.last_month)
