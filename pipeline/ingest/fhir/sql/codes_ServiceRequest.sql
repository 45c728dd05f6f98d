-- ServiceRequest lines -> the code each order is read by (`inspect`: the codes no map knows, for the site's
-- local_code_map.csv). The coding and the name come from the macros extract_ServiceRequest.sql reads them by
-- (macros.sql: fhir_order_coding, fhir_order_name) and the same resources are left out, so the counts are the
-- orders a run audits by each code.
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
        fhir_order_coding(r) AS coding
    FROM parsed
)
SELECT
    key,
    common AS problem,
    CASE WHEN common IS NULL THEN fhir_order_left_out(r) END AS left_out,
    nullif(trim(coding.system), '') AS code_system,
    upper(trim(coding.code)) AS code,
    fhir_order_name(r, coding) AS name
FROM checked
