-- Procedure lines -> one flat row per resource (procedures before the joins).
-- Left out on purpose (counted): status not-done or entered-in-error.
WITH parsed AS (
    SELECT key, try(json_transform(line, '{
        "resourceType": "VARCHAR", "id": "VARCHAR", "status": "VARCHAR",
        "code": {"coding": [{"system": "VARCHAR", "code": "VARCHAR", "display": "VARCHAR"}], "text": "VARCHAR"},
        "subject": {"reference": "VARCHAR"}, "encounter": {"reference": "VARCHAR"},
        "performedDateTime": "VARCHAR", "performedPeriod": {"start": "VARCHAR"},
        "performer": [{"actor": {"reference": "VARCHAR"}}],
        "location": {"reference": "VARCHAR", "display": "VARCHAR"},
        "extension": "JSON"
    }')) AS r
    FROM lines
),
checked AS (
    SELECT
        key,
        r,
        fhir_common_problem(r, 'Procedure') AS common,
        fhir_procedure_coding(r) AS coding,
        coalesce(nullif(trim(r.performedDateTime), ''), nullif(trim(r.performedPeriod.start), '')) AS performed,
        fhir_procedure_left_out(r) AS out_reason,
        -- R4's event-status codes: another word (a 'Not-Done') is a reject, never read as done
        fhir_code_problem('Procedure.status', r.status,
            ['preparation', 'in-progress', 'not-done', 'on-hold', 'stopped', 'completed', 'entered-in-error', 'unknown'])
            AS status_problem,
        fhir_extension_department(r.extension) AS ext
    FROM parsed
),
nul AS (  -- the first element read into the table that holds a NUL (macros.sql: fhir_nul)
    SELECT
        *,
        coalesce(fhir_nul_shared('Procedure', r, coding, ext), CASE
            WHEN fhir_nul(r.performer[1].actor.reference) THEN 'Procedure.performer'
            WHEN getvariable('fhir_procedure_location') AND fhir_nul(r.location.display) THEN 'Procedure.location'
        END) AS nul_in
    FROM checked
)
SELECT
    key,
    CASE
        WHEN common IS NOT NULL THEN common
        WHEN out_reason IS NOT NULL THEN NULL
        WHEN nul_in IS NOT NULL THEN fhir_nul_problem(nul_in)
        WHEN r.subject.reference IS NULL THEN fhir_problem('required element Procedure.subject missing', 'Procedure.subject', NULL)
        WHEN fhir_ref_id(r.subject.reference, 'Patient') IS NULL
            THEN fhir_problem('Procedure.subject is not a reference to a Patient', 'Procedure.subject', NULL)
        WHEN coding IS NULL THEN fhir_problem('required element Procedure.code.coding missing (no coding with a code)', 'Procedure.code', NULL)
        WHEN nullif(trim(r.status), '') IS NULL THEN fhir_problem('required element Procedure.status missing', 'Procedure.status', NULL)
        WHEN status_problem IS NOT NULL THEN status_problem
        WHEN performed IS NULL
            THEN fhir_problem('required element missing: Procedure.performedDateTime or performedPeriod.start', 'Procedure.performed[x]', NULL)
        WHEN fhir_no_offset(performed)
            THEN fhir_problem('dateTime with a time but no UTC offset (FHIR requires one)', 'Procedure.performed[x]', performed)
    END AS problem,
    CASE WHEN common IS NULL THEN out_reason END AS left_out,
    r.id AS procedure_id,
    fhir_ref_id(r.subject.reference, 'Patient') AS patient_id,
    performed AS performed_at,
    coding.code AS procedure_code,
    fhir_procedure_name(r, coding) AS procedure_name,
    r.performer[1].actor.reference AS provider_reference,
    fhir_ref_id(r.encounter.reference, 'Encounter') AS encounter_id,
    CASE WHEN getvariable('fhir_procedure_location') THEN fhir_ref_id(r.location.reference, 'Location') END AS location_id,
    CASE WHEN getvariable('fhir_procedure_location') THEN r.location.display END AS location_display,
    ext.text AS extension_text,
    ext.location_id AS extension_location_id,
    ext.location_display AS extension_location_display
FROM nul
