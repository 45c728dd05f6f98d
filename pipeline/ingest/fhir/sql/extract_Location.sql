-- Location lines -> id and name (the department a site exports as a Location), its physical type (bd bed,
-- ro room, wa ward ...: location-physical-type) and the Location it is part of (a bed's room, a room's ward).
WITH parsed AS (
    SELECT key, try(json_transform(line, '{"resourceType": "VARCHAR", "id": "VARCHAR", "name": "VARCHAR",
        "physicalType": {"coding": [{"code": "VARCHAR"}]}, "partOf": {"reference": "VARCHAR"}}')) AS r
    FROM lines
)
SELECT
    key,
    coalesce(fhir_common_problem(r, 'Location'), CASE  -- a NUL: macros.sql
        WHEN fhir_nul(r.id) THEN fhir_nul_problem('Location.id')
        WHEN fhir_nul(r.name) THEN fhir_nul_problem('Location.name')
    END) AS problem,
    CAST(NULL AS VARCHAR) AS left_out,
    r.id AS location_id,
    nullif(trim(r.name), '') AS name,
    r.physicalType.coding[1].code AS physical_type,
    fhir_ref_id(r.partOf.reference, 'Location') AS part_of
FROM parsed
