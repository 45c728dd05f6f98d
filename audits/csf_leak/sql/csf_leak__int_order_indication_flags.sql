-- Per order of an index patient with a leak or red-flag indication: which, plus the order's
-- patient, time and code list (min() of values that are one per order).
-- Exact codes match by a hash join; the few prefix rows (G00, M46.2, ...) by starts_with. A code
-- counts while in force at the order's time (an order without a time: any row of the code).
WITH codes AS (
    SELECT order_id, patient_id, ordered_at, indication_codes, indication_code FROM csf_leak__int_patient_order_indications
),
matched AS (
    SELECT c.order_id, c.patient_id, c.ordered_at, c.indication_codes, vs.value_set
    FROM codes AS c
    JOIN csf_leak__ref_value_sets AS vs ON vs.match = 'exact' AND vs.code_norm = c.indication_code
    WHERE vs.value_set IN ('leak_diagnosis', 'red_flag_indication')
      AND (c.ordered_at IS NULL OR (c.ordered_at >= vs.valid_from_at AND (vs.valid_until_at IS NULL OR c.ordered_at < vs.valid_until_at)))
    UNION ALL
    SELECT c.order_id, c.patient_id, c.ordered_at, c.indication_codes, vs.value_set
    FROM codes AS c
    JOIN csf_leak__ref_value_sets AS vs ON vs.match = 'prefix' AND starts_with(c.indication_code, vs.code_norm)
    WHERE vs.value_set IN ('leak_diagnosis', 'red_flag_indication')
      AND (c.ordered_at IS NULL OR (c.ordered_at >= vs.valid_from_at AND (vs.valid_until_at IS NULL OR c.ordered_at < vs.valid_until_at)))
)
SELECT
    order_id,
    min(patient_id) AS patient_id,
    min(ordered_at) AS ordered_at,
    min(indication_codes) AS indication_codes,
    bool_or(value_set = 'leak_diagnosis') AS has_leak_indication,
    bool_or(value_set = 'red_flag_indication') AS has_red_flag
FROM matched
GROUP BY order_id
