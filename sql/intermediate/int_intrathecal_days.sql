-- Site-local days on which a case patient had an intrathecal injection (other than the index):
-- a CT spine "with contrast" that day is CT myelography.
SELECT o.case_id, o.ordered_local_date AS injection_local_date
FROM int_case_orders AS o
WHERE o.is_eligible
  AND (o.study_type = 'myelography_injection'
       OR o.order_code IN (SELECT code_norm FROM stg_value_set_codes WHERE value_set = 'intrathecal_injection'))
UNION
SELECT c.case_id, p.performed_local_date
FROM int_cases AS c
JOIN stg_procedures AS p ON p.patient_id = c.patient_id AND p.procedure_id <> c.index_procedure_id
WHERE p.procedure_code IN (SELECT code_norm FROM stg_value_set_codes WHERE value_set = 'intrathecal_injection')
