-- Per order of an index patient: does an indication code suggest a leak, or a red flag?
-- Exact codes match by a hash join; the few prefix rows (G00, M46.2, ...) by starts_with.
WITH codes AS (
    SELECT order_id, indication_code FROM int_patient_order_indications
),
matched AS (
    SELECT c.order_id, vs.value_set
    FROM codes AS c
    JOIN stg_value_set_codes AS vs ON vs.match = 'exact' AND vs.code_norm = c.indication_code
    WHERE vs.value_set IN ('leak_diagnosis', 'red_flag_indication')
    UNION ALL
    SELECT c.order_id, vs.value_set
    FROM codes AS c
    JOIN stg_value_set_codes AS vs ON vs.match = 'prefix' AND starts_with(c.indication_code, vs.code_norm)
    WHERE vs.value_set IN ('leak_diagnosis', 'red_flag_indication')
)
SELECT
    order_id,
    bool_or(value_set = 'leak_diagnosis') AS has_leak_indication,
    bool_or(value_set = 'red_flag_indication') AS has_red_flag
FROM matched
GROUP BY order_id
