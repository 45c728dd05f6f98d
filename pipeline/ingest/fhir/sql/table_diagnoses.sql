-- The diagnoses rows: Conditions neither rejected nor left out, whose Patient is in the export. The
-- setting is the class of the Condition's encounter (Condition.encounter, else the encounter whose
-- diagnosis names it); rank and principal come from that diagnosis entry (Encounter.diagnosis).
-- tables.py keeps these three columns only when some row fills them (an export that never says is
-- an extract without the column: the audits then do not ask for it).
SELECT
    s.key AS source_line,
    s.patient_id,
    s.diagnosis_code,
    s.recorded_at,
    e.setting,
    d.is_principal,
    d.diagnosis_rank
FROM fhir_condition AS s
SEMI JOIN fhir_patients AS p ON p.patient_id = s.patient_id
LEFT JOIN fhir_encounter_diagnoses AS d ON d.condition_id = s.condition_id
LEFT JOIN fhir_condition_encounters AS e ON e.encounter_id = coalesce(s.encounter_id, d.encounter_id)
WHERE s.problem IS NULL AND s.left_out IS NULL
