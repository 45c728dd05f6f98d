-- Site-local days on which a case patient had an intrathecal injection (other than the index):
-- a CT spine "with contrast" that day is CT myelography.
SELECT o.case_id, o.ordered_local_date AS injection_local_date
FROM csf_leak__int_case_orders AS o
WHERE o.is_eligible
  AND (o.study_type = 'myelography_injection'
       OR EXISTS (SELECT 1 FROM csf_leak__ref_value_sets AS vs
                  WHERE vs.value_set = 'intrathecal_injection' AND vs.code_norm = o.order_code
                    AND o.ordered_at >= vs.valid_from_at AND (vs.valid_until_at IS NULL OR o.ordered_at < vs.valid_until_at)))
UNION
SELECT c.case_id, p.performed_local_date
FROM csf_leak__int_cases AS c
JOIN stg_procedures AS p ON p.patient_id = c.patient_id AND p.procedure_id <> c.index_procedure_id
WHERE EXISTS (SELECT 1 FROM csf_leak__ref_value_sets AS vs
              WHERE vs.value_set = 'intrathecal_injection' AND vs.code_norm = p.procedure_code
                AND p.performed_at >= vs.valid_from_at AND (vs.valid_until_at IS NULL OR p.performed_at < vs.valid_until_at))
