-- materialised: view
-- One row per (order, indication code) for the orders of index patients, the code in dotless
-- upper-case form. Split after the patient filter: splitting every order first costs 6x.
-- DuckDB-specific: string_split + unnest (Spark: split + explode).
SELECT DISTINCT order_id, indication_code
FROM (
    SELECT order_id, upper(replace(trim(unnest(string_split(indication_codes, '|'))), '.', '')) AS indication_code
    FROM int_patient_orders
    WHERE indication_codes IS NOT NULL
)
WHERE indication_code <> ''
