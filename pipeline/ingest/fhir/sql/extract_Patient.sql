-- Patient lines -> id, birth date, sex: the patients table (table_patients.sql) and procedures.patient_birth_date.
WITH parsed AS (
    SELECT key, try(json_transform(line, '{
        "resourceType": "VARCHAR", "id": "VARCHAR", "birthDate": "VARCHAR", "gender": "VARCHAR"
    }')) AS r
    FROM lines
)
SELECT
    key,
    coalesce(fhir_common_problem(r, 'Patient'), CASE  -- a NUL: macros.sql
        WHEN fhir_nul(r.id) THEN fhir_nul_problem('Patient.id')
        WHEN fhir_nul(r.birthDate) THEN fhir_nul_problem('Patient.birthDate')
        WHEN fhir_nul(r.gender) THEN fhir_nul_problem('Patient.gender')
    END) AS problem,
    CAST(NULL AS VARCHAR) AS left_out,
    r.id AS patient_id,
    r.birthDate AS birth_date,
    r.gender AS sex
FROM parsed
