-- The procedures rows: Procedures neither rejected nor left out, whose Patient is in the export,
-- with the patient's birth date from Patient.birthDate (the patients table will carry it once the
-- contract has one). The department: the sources [fhir] procedure_department names, in order
-- (python fills /*department*/).
SELECT
    key AS source_line,
    procedure_id,
    patient_id,
    performed_at,
    procedure_code,
    /*department*/ NULL AS department,
    procedure_name,
    fhir_provider(provider_identifier, provider_practitioner_id, provider_reference) AS provider_id,
    -- a partial birthDate (1970, 1970-05) is kept: the loader reads it as the days it spans; 19700101 or a dateTime
    -- is no FHIR date (nulled, with a note beside it: tables.py)
    fhir_birth_date(birth_date) AS patient_birth_date
FROM fhir_in_context('fhir_procedure', 'fhir_procedure_encounter_places')
WHERE problem IS NULL AND left_out IS NULL AND known_patient IS NOT NULL
