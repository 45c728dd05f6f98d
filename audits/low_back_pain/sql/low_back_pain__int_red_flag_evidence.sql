-- Red-flag evidence of the case patients, each at its site-local date: a diagnosis in any setting and
-- position (a red flag is a fact about the patient, not the encounter), and a code among the
-- indications of a dated order (low_back_pain__int_order_red_flags). A diagnosis code counts while in
-- force at its time; codes are joined on their three-character category as in int_lbp_diagnoses.
SELECT
    d.patient_id,
    CAST(timezone(prm.site_timezone, d.recorded_at) AS DATE) AS evidence_date,
    g.red_flag_group,
    'diagnosis' AS evidence_source
FROM stg_diagnoses AS d
JOIN low_back_pain__ref_value_sets AS vs
  ON substr(vs.code_norm, 1, 3) = substr(d.diagnosis_code_norm, 1, 3)
 AND ((vs.match = 'exact' AND vs.code_norm = d.diagnosis_code_norm)
      OR (vs.match = 'prefix' AND starts_with(d.diagnosis_code_norm, vs.code_norm)))
 AND d.recorded_at >= vs.valid_from_at AND (vs.valid_until_at IS NULL OR d.recorded_at < vs.valid_until_at)
JOIN low_back_pain__int_red_flag_groups AS g ON g.value_set = vs.value_set
CROSS JOIN low_back_pain__parameters AS prm
WHERE d.patient_id IN (SELECT patient_id FROM low_back_pain__int_patients)
UNION ALL
SELECT patient_id, ordered_local_date, red_flag_group, 'indication'
FROM low_back_pain__int_order_red_flags
WHERE ordered_at IS NOT NULL
