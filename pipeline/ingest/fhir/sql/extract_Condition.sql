-- Condition lines -> one diagnosis per resource: its first ICD-10-CM coding, when it was recorded and
-- its encounter (whose class is the diagnosis's setting: table_diagnoses.sql).
-- Left out on purpose (counted): verificationStatus refuted or entered-in-error (clinicalStatus
-- entered-in-error too, as some servers write it), and a Condition with no ICD-10-CM coding.
WITH parsed AS (
    SELECT key, try(json_transform(line, '{
        "resourceType": "VARCHAR", "id": "VARCHAR",
        "clinicalStatus": {"coding": [{"code": "VARCHAR"}]}, "verificationStatus": {"coding": [{"code": "VARCHAR"}]},
        "code": {"coding": [{"system": "VARCHAR", "code": "VARCHAR", "display": "VARCHAR"}]},
        "subject": {"reference": "VARCHAR"}, "encounter": {"reference": "VARCHAR"}, "recordedDate": "VARCHAR", "onsetDateTime": "VARCHAR"
    }')) AS r
    FROM lines
),
checked AS (
    SELECT
        key,
        r,
        fhir_common_problem(r, 'Condition') AS common,
        fhir_pick(r.code.coding, getvariable('fhir_diagnosis_systems')) AS coding,
        coalesce(nullif(trim(r.recordedDate), ''), nullif(trim(r.onsetDateTime), '')) AS recorded,
        CASE
            WHEN list_has_any(list_transform(r.verificationStatus.coding, lambda c: c.code), ['refuted', 'entered-in-error'])
                THEN 'Condition.verificationStatus ' || list_filter(
                    list_transform(r.verificationStatus.coding, lambda c: c.code), lambda c: c IN ('refuted', 'entered-in-error'))[1]
            WHEN list_contains(list_transform(r.clinicalStatus.coding, lambda c: c.code), 'entered-in-error')
                THEN 'Condition.clinicalStatus entered-in-error'
        END AS status_out,
        -- a status code in another case ('Refuted') is a reject, never read as confirmed (R4's two value sets)
        coalesce(
            fhir_miscased_problem('Condition.verificationStatus', list_transform(r.verificationStatus.coding, lambda c: c.code),
                ['unconfirmed', 'provisional', 'differential', 'confirmed', 'refuted', 'entered-in-error']),
            fhir_miscased_problem('Condition.clinicalStatus', list_transform(r.clinicalStatus.coding, lambda c: c.code),
                ['active', 'recurrence', 'relapse', 'inactive', 'remission', 'resolved', 'entered-in-error'])
        ) AS status_problem
    FROM parsed
)
SELECT
    key,
    CASE
        WHEN common IS NOT NULL THEN common
        WHEN status_out IS NOT NULL THEN NULL
        WHEN status_problem IS NOT NULL THEN status_problem
        WHEN fhir_nul(r.id) THEN fhir_nul_problem('Condition.id')
        WHEN fhir_nul(r.subject.reference) THEN fhir_nul_problem('Condition.subject')
        WHEN fhir_nul(coding.code) THEN fhir_nul_problem('Condition.code.coding.code')
        WHEN fhir_nul(r.encounter.reference) THEN fhir_nul_problem('Condition.encounter')
        WHEN r.subject.reference IS NULL THEN fhir_problem('required element Condition.subject missing', 'Condition.subject', NULL)
        WHEN fhir_ref_id(r.subject.reference, 'Patient') IS NULL
            THEN fhir_problem('Condition.subject is not a reference to a Patient', 'Condition.subject', NULL)
        WHEN fhir_first_coded(r.code.coding) IS NULL
            THEN fhir_problem('required element Condition.code.coding missing (no coding with a code)', 'Condition.code', NULL)
        WHEN coding IS NULL THEN NULL  -- coded in another system only: left out below
        WHEN recorded IS NULL
            THEN fhir_problem('required element missing: Condition.recordedDate or onsetDateTime', 'Condition.recordedDate', NULL)
        WHEN fhir_no_offset(recorded)
            THEN fhir_problem('dateTime with a time but no UTC offset (FHIR requires one)', 'Condition.recordedDate', recorded)
    END AS problem,
    CASE
        WHEN common IS NOT NULL THEN NULL
        WHEN status_out IS NOT NULL THEN status_out
        WHEN status_problem IS NOT NULL THEN NULL
        WHEN coding IS NULL AND fhir_first_coded(r.code.coding) IS NOT NULL
             AND fhir_ref_id(r.subject.reference, 'Patient') IS NOT NULL
            THEN 'Condition.code has no ICD-10-CM coding'
    END AS left_out,
    r.id AS condition_id,
    fhir_ref_id(r.subject.reference, 'Patient') AS patient_id,
    fhir_ref_id(r.encounter.reference, 'Encounter') AS encounter_id,
    trim(coding.code) AS diagnosis_code,
    recorded AS recorded_at
FROM checked
