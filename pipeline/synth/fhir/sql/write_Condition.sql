-- A diagnosis row (rows_Condition.sql) as a Condition: an encounter diagnosis, active and confirmed;
-- a row with a setting or a position refers to its own Encounter (write_Encounter.sql) that carries them.
SELECT
    w_object([
        w_member('resourceType', 'Condition'),
        w_member('id', 'cond-' || source_line),
        w_raw_member('clinicalStatus',
            '{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]}'),
        w_raw_member('verificationStatus',
            '{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}]}'),
        w_raw_member('category',
            '[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"encounter-diagnosis"}]}]'),
        w_raw_member('code', w_concept('http://hl7.org/fhir/sid/icd-10-cm', diagnosis_code, NULL, NULL)),
        w_raw_member('subject', w_reference('Patient', patient_id)),
        w_raw_member('encounter', w_reference('Encounter', w_diagnosis_encounter_id(source_line, setting, is_principal, diagnosis_rank))),
        w_member('recordedDate', w_datetime(recorded_at, recorded_at_is_date, _raw_recorded_at))
    ]) AS line
FROM w_part
