-- Encounter lines -> id, its first location (the ordering department, usually), its service type,
-- its class as a contract setting (diagnoses.setting) and the Conditions its diagnosis entries rank.
-- An Encounter of several locations (a bed and its ward, the moves of a stay) also gives them all as
-- `locations` (lookups.sql resolves them to departments; the department pick is per order, by its time:
-- macros.sql fhir_encounter_department); one location, the usual, gives none (its department as before).
WITH parsed AS (
    SELECT key, try(json_transform(line, '{
        "resourceType": "VARCHAR", "id": "VARCHAR",
        "location": [{"location": {"reference": "VARCHAR", "display": "VARCHAR"}, "status": "VARCHAR",
            "period": {"start": "VARCHAR", "end": "VARCHAR"}, "physicalType": {"coding": [{"code": "VARCHAR"}]}}],
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
        WHEN len(r.location) > 1 AND fhir_nul(array_to_string(list_transform(r.location, lambda l: l.location.display), ''))
            THEN fhir_nul_problem('Encounter.location')
        WHEN fhir_nul(fhir_concept_text(r.serviceType)) THEN fhir_nul_problem('Encounter.serviceType')
        WHEN fhir_nul(r.class.code) THEN fhir_nul_problem('Encounter.class')
    END) AS problem,
    CAST(NULL AS VARCHAR) AS left_out,
    r.id AS encounter_id,
    fhir_ref_id(r.location[1].location.reference, 'Location') AS location_id,
    r.location[1].location.display AS location_display,
    CASE WHEN len(r.location) > 1 THEN list_transform(r.location, lambda l: {
        'location_id': fhir_ref_id(l.location.reference, 'Location'),
        'display': l.location.display,
        'status': l.status,
        'start': nullif(trim(l.period.start), ''),
        'end': nullif(trim(l.period."end"), ''),
        'physical_type': l.physicalType.coding[1].code
    }) END AS locations,
    fhir_concept_text(r.serviceType) AS service_type,
    fhir_setting(r.class.system, r.class.code) AS setting,
    CASE WHEN len(r.diagnosis) > 0 THEN list_transform(r.diagnosis, lambda d: {
        'condition_id': fhir_ref_id(d.condition.reference, 'Condition'),
        'rank': nullif(trim(d.rank), ''),
        'is_principal': fhir_diagnosis_principal(list_transform(d.use.coding, lambda c: c.code))
    }) END AS diagnoses
FROM parsed
