-- Every sign of a suspected leak for patients with an index procedure:
-- a leak diagnosis, a leak indication on an imaging order, or an epidural blood patch.
SELECT d.patient_id, d.recorded_at AS evidence_at, d.recorded_at_is_date AS evidence_is_date,
       'diagnosis' AS evidence_source, d.diagnosis_code AS evidence_code
FROM stg_diagnoses AS d
WHERE d.patient_id IN (SELECT patient_id FROM csf_leak__int_index_procedures)
  AND EXISTS (SELECT 1 FROM csf_leak__ref_value_sets AS vs
              WHERE vs.value_set = 'leak_diagnosis'
                AND ((vs.match = 'exact' AND d.diagnosis_code_norm = vs.code_norm)
                  OR (vs.match = 'prefix' AND starts_with(d.diagnosis_code_norm, vs.code_norm)))
                AND d.recorded_at >= vs.valid_from_at AND (vs.valid_until_at IS NULL OR d.recorded_at < vs.valid_until_at))
UNION ALL
SELECT f.patient_id, f.ordered_at, false, 'indication', f.indication_codes
FROM csf_leak__int_order_indication_flags AS f
WHERE f.has_leak_indication AND f.ordered_at IS NOT NULL
UNION ALL
SELECT p.patient_id, p.performed_at, false, 'blood_patch', p.procedure_code
FROM stg_procedures AS p
WHERE p.patient_id IN (SELECT patient_id FROM csf_leak__int_index_procedures)
  AND EXISTS (SELECT 1 FROM csf_leak__ref_value_sets AS vs
              WHERE vs.value_set = 'blood_patch' AND vs.code_norm = p.procedure_code
                AND p.performed_at >= vs.valid_from_at AND (vs.valid_until_at IS NULL OR p.performed_at < vs.valid_until_at))
