-- Procedures, typed and normalised: site-local date and age in whole years at the procedure.
-- The birth date comes from the patients table first (a row without one falls through), then
-- from the procedure row; without either, the age recorded on the procedure row. An age no patient
-- has (a birth date after the procedure, or more than 130 years before it) is unknown, as a
-- patient_age outside 0-130 is nulled at load: else a typo'd birth year made an adult a minor.
WITH aged AS (
SELECT
    p.procedure_id,
    p.patient_id,
    p.performed_at,
    CAST(timezone(prm.site_timezone, p.performed_at) AS DATE) AS performed_local_date,
    p.procedure_code,
    p.procedure_name,
    coalesce(p.department, '(not recorded)') AS department,
    p.site,
    p.provider_id,
    p.needle_gauge,
    p.needle_type,
    p.attempts,
    p.patient_position,
    CASE
        WHEN coalesce(pt.birth_date, p.patient_birth_date) IS NOT NULL THEN
            year(timezone(prm.site_timezone, p.performed_at)) - year(coalesce(pt.birth_date, p.patient_birth_date))
            - CASE
                WHEN month(timezone(prm.site_timezone, p.performed_at)) < month(coalesce(pt.birth_date, p.patient_birth_date))
                  OR (month(timezone(prm.site_timezone, p.performed_at)) = month(coalesce(pt.birth_date, p.patient_birth_date))
                      AND day(timezone(prm.site_timezone, p.performed_at)) < day(coalesce(pt.birth_date, p.patient_birth_date)))
                THEN 1 ELSE 0 END
        ELSE p.patient_age
    END AS age_at_procedure
FROM src_procedures AS p
LEFT JOIN stg_patients AS pt ON pt.patient_id = p.patient_id
CROSS JOIN run_parameters AS prm
)
SELECT
    procedure_id,
    patient_id,
    performed_at,
    performed_local_date,
    procedure_code,
    procedure_name,
    department,
    site,
    provider_id,
    needle_gauge,
    needle_type,
    attempts,
    patient_position,
    CASE WHEN age_at_procedure BETWEEN 0 AND 130 THEN age_at_procedure END AS age_years
FROM aged
