-- Procedures, typed and normalised: site-local date and age in whole years at the procedure.
-- The birth date comes from the patients table first (a row without one falls through), then
-- from the procedure row; without either, the age recorded on the procedure row. An age no patient
-- has (a birth date after the procedure, or more than 130 years before it) is unknown, as a
-- patient_age outside 0-130 is nulled at load: else a typo'd birth year made an adult a minor.
-- A partial birth date (1980, 1980-05: FHIR allows it) is a range of days, so the age is a range:
-- age_years_min (born on its latest day) to age_years_max (born on its earliest); an audit's age band
-- is settled when the whole range is inside or outside it. A whole date or a recorded age gives one
-- value (min = max = age_years, exactly as before); age_years is the age only when the range is one
-- value. The part of a range no patient has (before birth, over 130) is left out of it.
WITH born AS (
SELECT
    p.*,
    CAST(timezone(prm.site_timezone, p.performed_at) AS DATE) AS performed_local_date,
    -- the source as a pair: the patients table's birth (whole or partial), else the procedure row's
    CASE WHEN pt.birth_earliest IS NOT NULL THEN pt.birth_earliest
         ELSE coalesce(p.patient_birth_date, p.patient_birth_earliest) END AS birth_earliest,
    CASE WHEN pt.birth_earliest IS NOT NULL THEN pt.birth_latest
         ELSE coalesce(p.patient_birth_date, p.patient_birth_latest) END AS birth_latest
FROM src_procedures AS p
LEFT JOIN stg_patients AS pt ON pt.patient_id = p.patient_id
CROSS JOIN run_parameters AS prm
),
aged AS (
SELECT
    b.*,
    CASE
        WHEN b.birth_latest IS NOT NULL THEN
            year(b.performed_local_date) - year(b.birth_latest)
            - CASE
                WHEN month(b.performed_local_date) < month(b.birth_latest)
                  OR (month(b.performed_local_date) = month(b.birth_latest)
                      AND day(b.performed_local_date) < day(b.birth_latest))
                THEN 1 ELSE 0 END
        ELSE b.patient_age
    END AS age_low,
    CASE
        WHEN b.birth_earliest IS NOT NULL THEN
            year(b.performed_local_date) - year(b.birth_earliest)
            - CASE
                WHEN month(b.performed_local_date) < month(b.birth_earliest)
                  OR (month(b.performed_local_date) = month(b.birth_earliest)
                      AND day(b.performed_local_date) < day(b.birth_earliest))
                THEN 1 ELSE 0 END
        ELSE b.patient_age
    END AS age_high
FROM born AS b
),
bounded AS (
SELECT
    a.*,
    CASE WHEN a.age_low < 0 THEN 0 ELSE a.age_low END AS age_min,
    CASE WHEN a.age_high > 130 THEN 130 ELSE a.age_high END AS age_max
FROM aged AS a
)
SELECT
    procedure_id,
    patient_id,
    performed_at,
    performed_local_date,
    procedure_code,
    procedure_name,
    coalesce(department, '(not recorded)') AS department,
    site,
    provider_id,
    needle_gauge,
    needle_type,
    attempts,
    patient_position,
    CASE WHEN age_min = age_max THEN age_min END AS age_years,
    CASE WHEN age_min <= age_max THEN age_min END AS age_years_min,
    CASE WHEN age_min <= age_max THEN age_max END AS age_years_max
FROM bounded
