-- ServiceRequest lines -> one flat row per resource (imaging_orders before the joins).
-- problem: why the line is rejected; left_out: why it is left out on purpose (counted): status
-- entered-in-error or draft (not placed), intent proposal / plan / option (not an order), a
-- category that is not imaging. Speed matters (tens of millions of lines): every column costs,
-- so what the site's settings do not use (its own location, an extension) is a constant the
-- optimizer drops, and the usual shapes (one coding, one reason) take no lambda (macros.sql).
WITH parsed AS (
    SELECT key, try(json_transform(line, '{
        "resourceType": "VARCHAR", "id": "VARCHAR", "status": "VARCHAR", "intent": "VARCHAR", "priority": "VARCHAR",
        "category": [{"coding": [{"system": "VARCHAR", "code": "VARCHAR"}]}],
        "code": {"coding": [{"system": "VARCHAR", "code": "VARCHAR", "display": "VARCHAR"}], "text": "VARCHAR"},
        "subject": {"reference": "VARCHAR"}, "encounter": {"reference": "VARCHAR"}, "authoredOn": "VARCHAR",
        "requester": {"reference": "VARCHAR"},
        "reasonCode": [{"coding": [{"system": "VARCHAR", "code": "VARCHAR"}], "text": "VARCHAR"}],
        "reasonReference": [{"reference": "VARCHAR"}],
        "locationReference": [{"reference": "VARCHAR", "display": "VARCHAR"}],
        "extension": "JSON", "contained": "JSON"
    }')) AS r
    FROM lines
),
checked AS (
    SELECT
        key,
        r,
        fhir_common_problem(r, 'ServiceRequest') AS common,
        fhir_order_coding(r) AS coding,
        fhir_ref_id(r.subject.reference, 'Patient') AS patient_id,
        fhir_order_left_out(r) AS out_reason,
        -- R4's request-intent codes: another word (a 'Proposal') is a reject, never read as an order
        fhir_code_problem('ServiceRequest.intent', r.intent, ['proposal', 'plan', 'directive', 'order', 'original-order',
            'reflex-order', 'filler-order', 'instance-order', 'option']) AS intent_problem,
        fhir_extension_department(r.extension) AS ext,
        -- indications: the ICD-10-CM codings of every reasonCode, then of the contained Conditions a reasonReference
        -- names ('#c0'); a reasonReference to a Condition of the export is resolved in the join
        CASE
            WHEN list_bool_or(list_transform(r.reasonReference, lambda rr: starts_with(rr.reference, '#')))
                THEN list_concat(
                    coalesce(fhir_concept_codes(r.reasonCode, getvariable('fhir_diagnosis_systems')), []),
                    fhir_contained_codes(r.contained, list_transform(r.reasonReference, lambda rr: rr.reference),
                        getvariable('fhir_diagnosis_systems')))
            WHEN len(r.reasonCode) > 0 THEN fhir_concept_codes(r.reasonCode, getvariable('fhir_diagnosis_systems'))
        END AS reason_codes,
        CASE WHEN len(r.reasonCode) > 0 THEN fhir_concept_texts(r.reasonCode) END AS indication_text
    FROM parsed
),
nul AS (  -- the first element read into the table that holds a NUL (macros.sql: fhir_nul)
    SELECT
        *,
        coalesce(fhir_nul_shared('ServiceRequest', r, coding, ext), CASE
            WHEN fhir_nul(r.status) THEN 'ServiceRequest.status'
            WHEN fhir_nul(r.priority) THEN 'ServiceRequest.priority'
            WHEN fhir_nul(array_to_string(reason_codes, '|')) THEN 'ServiceRequest.reasonCode.coding.code'
            WHEN fhir_nul(indication_text) THEN 'ServiceRequest.reasonCode.text'
            WHEN fhir_nul(r.requester.reference) THEN 'ServiceRequest.requester'
            WHEN getvariable('fhir_order_location') AND fhir_nul(r.locationReference[1].display) THEN 'ServiceRequest.locationReference'
        END) AS nul_in
    FROM checked
)
SELECT
    key,
    CASE
        WHEN common IS NOT NULL THEN common
        WHEN out_reason IS NOT NULL THEN NULL
        WHEN nul_in IS NOT NULL THEN fhir_nul_problem(nul_in)
        WHEN patient_id IS NOT NULL AND coding IS NOT NULL AND r.status <> '' AND NOT fhir_no_offset(r.authoredOn)
             AND intent_problem IS NULL THEN NULL
        WHEN r.subject.reference IS NULL THEN fhir_problem('required element ServiceRequest.subject missing', 'ServiceRequest.subject', NULL)
        WHEN patient_id IS NULL
            THEN fhir_problem('ServiceRequest.subject is not a reference to a Patient', 'ServiceRequest.subject', NULL)
        WHEN coding IS NULL
            THEN fhir_problem('required element ServiceRequest.code.coding missing (no coding with a code)', 'ServiceRequest.code', NULL)
        WHEN coalesce(r.status, '') = '' THEN fhir_problem('required element ServiceRequest.status missing', 'ServiceRequest.status', NULL)
        WHEN intent_problem IS NOT NULL THEN intent_problem
        WHEN fhir_no_offset(r.authoredOn)
            THEN fhir_problem('dateTime with a time but no UTC offset (FHIR requires one)', 'ServiceRequest.authoredOn', r.authoredOn)
    END AS problem,
    CASE WHEN common IS NULL THEN out_reason END AS left_out,
    r.id AS order_id,
    patient_id,
    r.authoredOn AS ordered_at,
    coding.code AS order_code,
    fhir_order_name(r, coding) AS order_name,
    -- FHIR's words for the contract's: revoked is cancelled, active and on-hold are placed and waiting,
    -- unknown is no status; another word stays as delivered (the gate and [values] see it)
    CASE r.status
        WHEN 'completed' THEN 'completed'
        WHEN 'active' THEN 'ordered'
        WHEN 'revoked' THEN 'cancelled'
        WHEN 'on-hold' THEN 'ordered'
        WHEN 'unknown' THEN NULL
        ELSE r.status
    END AS status,
    r.priority AS priority,
    reason_codes,
    indication_text,
    CASE WHEN len(r.reasonReference) > 0 THEN list_filter(
        list_transform(r.reasonReference, lambda rr: fhir_ref_id(rr.reference, 'Condition')), lambda x: x IS NOT NULL) END
        AS reason_condition_ids,
    r.requester.reference AS provider_reference,
    fhir_ref_id(r.encounter.reference, 'Encounter') AS encounter_id,
    CASE WHEN getvariable('fhir_order_location') THEN fhir_ref_id(r.locationReference[1].reference, 'Location') END AS location_id,
    CASE WHEN getvariable('fhir_order_location') THEN r.locationReference[1].display END AS location_display,
    ext.text AS extension_text,
    ext.location_id AS extension_location_id,
    ext.location_display AS extension_location_display
FROM nul
