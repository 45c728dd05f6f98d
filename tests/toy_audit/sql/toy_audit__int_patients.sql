-- The patients the audit names (the engine keys them: toy_audit__int_patient_keys).
SELECT DISTINCT patient_id FROM toy_audit__int_cases
