-- The cases: new low back pain episodes of patients aged min_age_years..max_age_years at the index
-- date. case_id = the patient's keyed pseudonym and the index date (never the raw id).
SELECT
    pk.patient_key || '-' || strftime(e.index_date, '%Y-%m-%d') AS case_id,
    e.patient_id,
    pk.patient_key,
    e.index_date,
    strftime(e.index_date, '%Y-%m') AS index_month,
    e.index_at,
    e.index_setting,
    e.index_diagnosis_code,
    e.age_years
FROM low_back_pain__int_episodes AS e
JOIN low_back_pain__int_patient_keys AS pk ON pk.patient_id = e.patient_id
WHERE e.is_case
