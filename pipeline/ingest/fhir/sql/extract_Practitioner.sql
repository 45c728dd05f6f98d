-- Practitioner lines -> id and the identifier in the configured system (NPI by default).
WITH parsed AS (
    SELECT key, try(json_transform(line, '{
        "resourceType": "VARCHAR", "id": "VARCHAR", "identifier": [{"system": "VARCHAR", "value": "VARCHAR"}]
    }')) AS r
    FROM lines
),
identified AS (  -- the identifier in the configured system, as delivered
    SELECT key, r, list_filter(r.identifier, lambda i: i.system = getvariable('fhir_provider_system'))[1].value AS identifier
    FROM parsed
)
SELECT
    key,
    coalesce(fhir_common_problem(r, 'Practitioner'), CASE  -- a NUL: macros.sql
        WHEN fhir_nul(r.id) THEN fhir_nul_problem('Practitioner.id')
        WHEN fhir_nul(identifier) THEN fhir_nul_problem('Practitioner.identifier')
    END) AS problem,
    CAST(NULL AS VARCHAR) AS left_out,
    r.id AS practitioner_id,
    nullif(trim(identifier), '') AS identifier
FROM identified
