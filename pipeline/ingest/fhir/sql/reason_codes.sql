-- The indication_codes of the orders of one streamed batch whose reasonReference names Conditions
-- (fhir_reason_batch: source_line, reason_codes, reason_condition_ids; orders.py): the reasonCode
-- codes, then the codes of the named Conditions the diagnoses table keeps, in the references' order.
-- An order none of whose Conditions is kept has no row (its codes stay as the stream made them).
SELECT r.source_line, fhir_indication_codes(list_concat(any_value(r.reason_codes), list(c.diagnosis_code ORDER BY r.pos)))
    AS indication_codes
FROM (
    SELECT source_line, reason_codes, unnest(reason_condition_ids) AS condition_id,
           generate_subscripts(reason_condition_ids, 1) AS pos
    FROM fhir_reason_batch
) AS r
JOIN fhir_reason_conditions AS c USING (condition_id)
GROUP BY r.source_line
