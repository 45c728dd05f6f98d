-- Patients (optional table): birth date and sex per patient id. Every audit takes a patient's
-- birth date from here first, then from the procedure rows (stg_procedures).
SELECT
    p.patient_id,
    p.birth_date,
    p.sex
FROM src_patients AS p
