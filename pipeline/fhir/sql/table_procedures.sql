-- Procedures (extracted) -> procedures rows, with the patient's birth date from Patient.birthDate
-- (the patients table will carry it once the contract has one). The department: the sources
-- [fhir] procedure_department names, in order (python fills /*department*/).
WITH joined AS (SELECT * FROM fhir_in_context('fhir_procedure'))
SELECT
    key AS source_line,
    CASE
        WHEN problem IS NOT NULL OR left_out IS NOT NULL THEN problem
        WHEN known_patient IS NULL THEN fhir_problem('reference to a Patient that is not in the export', 'Procedure.subject', NULL)
    END AS _fhir_problem,
    CASE WHEN problem IS NULL THEN left_out END AS _fhir_left_out,
    procedure_id,
    patient_id,
    performed_at,
    procedure_code,
    /*department*/ NULL AS department,
    procedure_name,
    coalesce(provider_identifier, fhir_ref_id(provider_reference, 'Practitioner'), provider_reference) AS provider_id,
    -- a partial birthDate (1970, 1970-05) is valid FHIR but no day to count an age from: no birth date
    CASE WHEN length(birth_date) = 10 THEN birth_date END AS patient_birth_date,
    CASE WHEN length(birth_date) < 10 THEN birth_date END AS _fhir_partial_birth_date
FROM joined
