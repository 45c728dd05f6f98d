-- Cases: (patient, index procedure) with leak evidence in the window, adult at the procedure.
-- case_id is the index procedure_id.
SELECT
    a.procedure_id AS case_id,
    a.procedure_id AS index_procedure_id,
    a.patient_id,
    a.performed_at AS index_at,
    a.performed_local_date AS index_local_date,
    strftime(a.performed_local_date, '%Y-%m') AS index_month,
    a.procedure_code AS index_code,
    a.department,
    a.site,
    a.provider_id,
    a.age_years,
    a.needle_gauge,
    a.needle_type,
    a.attempts,
    a.patient_position,
    a.evidence_sources,
    a.first_evidence_at
FROM csf_leak__int_index_assessment AS a
WHERE a.is_case
