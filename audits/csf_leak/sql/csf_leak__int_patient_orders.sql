-- materialised: view
-- Orders of patients who had an index procedure: the only orders that can hold a leak
-- indication. A view: each consumer reads only the columns it needs (order, patient, time,
-- indication codes), so the ~20% of all orders that belong to index patients are never copied.
SELECT o.*
FROM stg_imaging_orders AS o
WHERE o.patient_id IN (SELECT patient_id FROM csf_leak__int_index_procedures)
