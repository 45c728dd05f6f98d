-- Encounter lines -> id, its first location (the ordering department, usually) and its service type.
WITH parsed AS (
    SELECT key, try(json_transform(line, '{
        "resourceType": "VARCHAR", "id": "VARCHAR",
        "location": [{"location": {"reference": "VARCHAR", "display": "VARCHAR"}}],
        "serviceType": {"text": "VARCHAR", "coding": [{"code": "VARCHAR", "display": "VARCHAR"}]}
    }')) AS r
    FROM lines
)
SELECT
    key,
    fhir_common_problem(r, 'Encounter') AS problem,
    CAST(NULL AS VARCHAR) AS left_out,
    r.id AS encounter_id,
    fhir_ref_id(r.location[1].location.reference, 'Location') AS location_id,
    r.location[1].location.display AS location_display,
    fhir_concept_text(r.serviceType) AS service_type
FROM parsed
