-- Practitioner lines -> id and the identifier in the configured system (NPI by default).
WITH parsed AS (
    SELECT key, try(json_transform(line, '{
        "resourceType": "VARCHAR", "id": "VARCHAR", "identifier": [{"system": "VARCHAR", "value": "VARCHAR"}]
    }')) AS r
    FROM lines
)
SELECT
    key,
    fhir_common_problem(r, 'Practitioner') AS problem,
    CAST(NULL AS VARCHAR) AS left_out,
    r.id AS practitioner_id,
    nullif(trim(list_filter(r.identifier, lambda i: i.system = getvariable('fhir_provider_system'))[1].value), '') AS identifier
FROM parsed
