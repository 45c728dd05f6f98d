-- Diagnoses with the code in dotless upper-case form (G97.1 and g971 are one code), and the
-- optional encounter columns (setting, is_principal, diagnosis_rank: NULL when the feed lacks
-- them; input_columns says whether it has them).
SELECT
    d.patient_id,
    replace(d.diagnosis_code, '.', '') AS diagnosis_code_norm,
    d.diagnosis_code,
    d.recorded_at,
    coalesce(d.recorded_at_is_date, false) AS recorded_at_is_date,
    d.setting,
    d.is_principal,
    d.diagnosis_rank
FROM src_diagnoses AS d
