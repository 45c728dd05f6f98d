-- ServiceRequest lines -> the code each order is read by (`inspect`: the codes no map knows, for the site's
-- local_code_map.csv). The coding is picked as extract_ServiceRequest.sql picks it (fhir_code over the same
-- systems) and the same resources are left out, so the counts are the orders a run audits by each code.
WITH parsed AS (
    SELECT key, try(json_transform(line, '{
        "resourceType": "VARCHAR", "id": "VARCHAR", "status": "VARCHAR", "intent": "VARCHAR",
        "category": [{"coding": [{"system": "VARCHAR", "code": "VARCHAR"}]}],
        "code": {"coding": [{"system": "VARCHAR", "code": "VARCHAR", "display": "VARCHAR"}], "text": "VARCHAR"}
    }')) AS r
    FROM lines
),
checked AS (
    SELECT
        key,
        r,
        fhir_common_problem(r, 'ServiceRequest') AS common,
        fhir_code(r.code.coding, getvariable('fhir_order_systems')) AS coding
    FROM parsed
)
SELECT
    key,
    common AS problem,
    CASE WHEN common IS NULL THEN fhir_order_left_out(r) END AS left_out,
    nullif(trim(coding.system), '') AS code_system,
    upper(trim(coding.code)) AS code,
    coalesce(nullif(r.code.text, ''), coding.display) AS name
FROM checked
