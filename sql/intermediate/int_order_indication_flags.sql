-- Per order of an index patient: does an indication code suggest a leak, or a red flag?
SELECT
    i.order_id,
    bool_or(vs.value_set = 'leak_diagnosis') AS has_leak_indication,
    bool_or(vs.value_set = 'red_flag_indication') AS has_red_flag
FROM stg_order_indications AS i
JOIN stg_value_set_codes AS vs
  ON vs.value_set IN ('leak_diagnosis', 'red_flag_indication')
 AND ((vs.match = 'exact' AND i.indication_code = vs.code_norm)
   OR (vs.match = 'prefix' AND starts_with(i.indication_code, vs.code_norm)))
WHERE i.order_id IN (SELECT order_id FROM int_patient_orders)
GROUP BY i.order_id
