-- Procedure lines -> the code each procedure is read by (`inspect`: which code systems the procedures are
-- coded in). The coding and the name come from the macros extract_Procedure.sql reads them by
-- (macros.sql: fhir_procedure_coding, fhir_procedure_name), and the same resources are left out.
WITH parsed AS (
    SELECT key, try(json_transform(line, '{
        "resourceType": "VARCHAR", "id": "VARCHAR", "status": "VARCHAR",
        "code": {"coding": [{"system": "VARCHAR", "code": "VARCHAR", "display": "VARCHAR"}], "text": "VARCHAR"}
    }')) AS r
    FROM lines
),
checked AS (
    SELECT
        key,
        r,
        fhir_common_problem(r, 'Procedure') AS common,
        fhir_procedure_coding(r) AS coding
    FROM parsed
)
SELECT
    key,
    common AS problem,
    CASE WHEN common IS NULL THEN fhir_procedure_left_out(r) END AS left_out,
    nullif(trim(coding.system), '') AS code_system,
    upper(trim(coding.code)) AS code,
    fhir_procedure_name(r, coding) AS name
FROM checked
