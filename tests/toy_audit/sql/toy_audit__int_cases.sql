-- One case per patient: the patient's first order the audit reads is its index (case_id = that order).
SELECT order_id AS case_id, patient_id, ordered_at AS index_at, ordered_local_date AS index_date, order_month AS index_month
FROM toy_audit__int_orders
QUALIFY row_number() OVER (PARTITION BY patient_id ORDER BY ordered_at, order_id) = 1
