-- One Encounter per patient, ordering department and local day of the orders (w_order_encounter_id):
-- the visit whose location is the ordering department (ServiceRequest.encounter -> Encounter.location
-- -> Location). Then one per diagnosis row with a setting or a position (w_diagnosis_encounter_id).
-- n orders the visits by id, then the diagnosis encounters by their row ('0' / '1', a fixed width).
SELECT '0' || encounter_id AS n, encounter_id, patient_id, ordering_department,
    CAST(NULL AS BIGINT) AS source_line, CAST(NULL AS VARCHAR) AS setting, CAST(NULL AS BOOLEAN) AS is_principal,
    CAST(NULL AS BIGINT) AS diagnosis_rank
FROM (
    SELECT DISTINCT w_order_encounter_id(patient_id, ordering_department, ordered_at) AS encounter_id, patient_id, ordering_department
    FROM w_imaging_orders WHERE patient_id IS NOT NULL AND ordering_department IS NOT NULL
)
UNION ALL
SELECT '1' || lpad(CAST(source_line AS VARCHAR), 20, '0'), w_diagnosis_encounter_id(source_line, setting, is_principal, diagnosis_rank),
    patient_id, NULL, source_line, setting, is_principal, diagnosis_rank
FROM w_diagnoses
WHERE w_diagnosis_encounter_id(source_line, setting, is_principal, diagnosis_rank) IS NOT NULL
