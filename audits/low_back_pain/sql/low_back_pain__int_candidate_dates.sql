-- Steps 3 and 4: each site-local date with an index-eligible low back pain diagnosis is a candidate
-- index date (several rows on one date: one candidate). It starts a new episode when the patient has
-- no low back pain diagnosis at all (any setting, any position) on the negative_history_days days
-- before it; the look-back is to the last diagnosis, so diagnoses less than that far apart keep one
-- episode going. The candidate's index row is the earliest eligible row of the date (a date-only row
-- is local midnight), ties by setting, then code.
WITH days AS (
    SELECT patient_id, diagnosis_date, bool_or(is_principal_ok AND is_setting_ok) AS is_candidate
    FROM low_back_pain__int_lbp_diagnoses
    GROUP BY patient_id, diagnosis_date
),
history AS (
    SELECT
        patient_id,
        diagnosis_date,
        is_candidate,
        lag(diagnosis_date) OVER (PARTITION BY patient_id ORDER BY diagnosis_date) AS previous_date
    FROM days
),
index_rows AS (
    SELECT
        patient_id, diagnosis_date, recorded_at, setting, diagnosis_code,
        row_number() OVER (PARTITION BY patient_id, diagnosis_date ORDER BY recorded_at, setting, diagnosis_code) AS pick
    FROM low_back_pain__int_lbp_diagnoses
    WHERE is_principal_ok AND is_setting_ok
)
SELECT
    h.patient_id,
    h.diagnosis_date AS index_date,
    h.previous_date,
    h.previous_date IS NULL
        OR date_diff('day', h.previous_date, h.diagnosis_date) > prm.negative_history_days AS is_new_episode,
    r.recorded_at AS index_at,
    r.setting AS index_setting,
    r.diagnosis_code AS index_diagnosis_code
FROM history AS h
JOIN index_rows AS r ON r.patient_id = h.patient_id AND r.diagnosis_date = h.diagnosis_date AND r.pick = 1
CROSS JOIN low_back_pain__parameters AS prm
WHERE h.is_candidate
