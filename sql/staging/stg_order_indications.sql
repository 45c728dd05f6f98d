-- One row per (order, indication code), dotless upper-case, from the `|`-separated list.
-- DuckDB-specific: string_split + unnest (Spark: split + explode).
SELECT DISTINCT order_id, indication_code
FROM (
    SELECT order_id, upper(replace(trim(unnest(string_split(indication_codes, '|'))), '.', '')) AS indication_code
    FROM src_imaging_orders
    WHERE indication_codes IS NOT NULL
)
WHERE indication_code <> ''
