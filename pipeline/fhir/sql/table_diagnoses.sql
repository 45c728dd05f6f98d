-- Conditions (extracted) -> diagnoses rows.
SELECT
    s.key AS source_line,
    CASE
        WHEN s.problem IS NOT NULL OR s.left_out IS NOT NULL THEN s.problem
        WHEN p.patient_id IS NULL THEN fhir_problem('reference to a Patient that is not in the export', 'Condition.subject', NULL)
    END AS _fhir_problem,
    CASE WHEN s.problem IS NULL THEN s.left_out END AS _fhir_left_out,
    s.patient_id,
    s.diagnosis_code,
    s.recorded_at
FROM fhir_condition AS s
LEFT JOIN fhir_patients AS p ON p.patient_id = s.patient_id
