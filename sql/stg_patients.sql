-- Patients (optional table): birth date and sex per patient id. Every audit takes a patient's
-- birth date from here first, then from the procedure rows (stg_procedures). The birth is known
-- as a range of days: a whole date is a range of one day; a partial one (1980, 1980-05) spans
-- its year or month (the loader's birth_earliest and birth_latest); none: both NULL.
SELECT
    p.patient_id,
    p.birth_date,
    coalesce(p.birth_date, p.birth_earliest) AS birth_earliest,
    coalesce(p.birth_date, p.birth_latest) AS birth_latest,
    p.sex
FROM src_patients AS p
