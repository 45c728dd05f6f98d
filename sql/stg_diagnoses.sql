-- Diagnoses with the code in dotless upper-case form (G97.1 and g971 are one code), and the
-- optional encounter columns (setting, is_principal, diagnosis_rank: NULL when the feed lacks
-- them; input_columns says whether it has them).
-- A date is recorded_at_is_date: a bare date in the file, or any time of a load whose every time (ten or more)
-- is the site's local midnight: a date column exported as a timestamp (SQL Server's DATETIME writes
-- 2025-03-15 00:00:00). Read as an instant, such a diagnosis on the day of a procedure fell before it, and the
-- CSF-leak audit lost the case (an adopting site's review: 50 cases became 49).
WITH local AS (
    SELECT d.*, timezone(prm.site_timezone, d.recorded_at) AS recorded_local
    FROM src_diagnoses AS d
    CROSS JOIN run_parameters AS prm
),
timed AS (
    SELECT
        *,
        hour(recorded_local) = 0 AND minute(recorded_local) = 0 AND second(recorded_local) = 0 AS is_local_midnight
    FROM local
),
loads AS (
    SELECT load_id, count(recorded_at) >= 10 AND count(*) FILTER (WHERE NOT is_local_midnight) = 0 AS dates_as_midnight
    FROM timed
    GROUP BY load_id
)
SELECT
    d.patient_id,
    replace(d.diagnosis_code, '.', '') AS diagnosis_code_norm,
    d.diagnosis_code,
    d.recorded_at,
    coalesce(d.recorded_at_is_date, false) OR coalesce(l.dates_as_midnight AND d.is_local_midnight, false) AS recorded_at_is_date,
    d.setting,
    d.is_principal,
    d.diagnosis_rank
FROM timed AS d
JOIN loads AS l ON l.load_id = d.load_id
