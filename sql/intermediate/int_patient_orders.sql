-- Orders of patients who had an index procedure: the only orders that can matter.
SELECT o.*
FROM stg_imaging_orders AS o
WHERE o.patient_id IN (SELECT patient_id FROM int_index_procedures)
