-- Location lines -> id and name (the department a site exports as a Location).
WITH parsed AS (
    SELECT key, try(json_transform(line, '{"resourceType": "VARCHAR", "id": "VARCHAR", "name": "VARCHAR"}')) AS r
    FROM lines
)
SELECT
    key,
    fhir_common_problem(r, 'Location') AS problem,
    CAST(NULL AS VARCHAR) AS left_out,
    r.id AS location_id,
    nullif(trim(r.name), '') AS name
FROM parsed
