-- Encounter lines -> id, its first location (the ordering department, usually), its service type,
-- its class as a contract setting (diagnoses.setting) and the Conditions its diagnosis entries rank.
WITH parsed AS (
    SELECT key, try(json_transform(line, '{
        "resourceType": "VARCHAR", "id": "VARCHAR",
        "location": [{"location": {"reference": "VARCHAR", "display": "VARCHAR"}}],
        "serviceType": {"text": "VARCHAR", "coding": [{"code": "VARCHAR", "display": "VARCHAR"}]},
        "class": {"system": "VARCHAR", "code": "VARCHAR"},
        "diagnosis": [{"condition": {"reference": "VARCHAR"}, "rank": "VARCHAR", "use": {"coding": [{"code": "VARCHAR"}]}}]
    }')) AS r
    FROM lines
)
SELECT
    key,
    coalesce(fhir_common_problem(r, 'Encounter'), CASE  -- a NUL: macros.sql
        WHEN fhir_nul(r.id) THEN fhir_nul_problem('Encounter.id')
        WHEN fhir_nul(r.location[1].location.reference) OR fhir_nul(r.location[1].location.display)
            THEN fhir_nul_problem('Encounter.location')
        WHEN fhir_nul(fhir_concept_text(r.serviceType)) THEN fhir_nul_problem('Encounter.serviceType')
        WHEN fhir_nul(r.class.code) THEN fhir_nul_problem('Encounter.class')
    END) AS problem,
    CAST(NULL AS VARCHAR) AS left_out,
    r.id AS encounter_id,
    fhir_ref_id(r.location[1].location.reference, 'Location') AS location_id,
    r.location[1].location.display AS location_display,
    fhir_concept_text(r.serviceType) AS service_type,
    fhir_setting(r.class.system, r.class.code) AS setting,
    CASE WHEN len(r.diagnosis) > 0 THEN list_transform(r.diagnosis, lambda d: {
        'condition_id': fhir_ref_id(d.condition.reference, 'Condition'),
        'rank': nullif(trim(d.rank), ''),
        'is_principal': fhir_diagnosis_principal(list_transform(d.use.coding, lambda c: c.code))
    }) END AS diagnoses
FROM parsed
