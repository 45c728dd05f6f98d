-- The diagnoses rows: Conditions neither rejected nor left out, whose Patient is in the export.
SELECT
    s.key AS source_line,
    s.patient_id,
    s.diagnosis_code,
    s.recorded_at
FROM fhir_condition AS s
SEMI JOIN fhir_patients AS p ON p.patient_id = s.patient_id
WHERE s.problem IS NULL AND s.left_out IS NULL
