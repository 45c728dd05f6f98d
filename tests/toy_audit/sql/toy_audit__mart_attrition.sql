-- From the period's cases down to flagged orders.
WITH orders AS (SELECT * FROM toy_audit__mart_audited_orders),
cases AS (SELECT * FROM toy_audit__mart_cases)
SELECT * FROM (
    SELECT 1 AS step_order, 'Patients with adult head CT orders' AS step, 'patients' AS unit,
           (SELECT count(*) FROM cases) AS count, 'step' AS kind, '' AS note
    UNION ALL SELECT 2, 'Audited orders', 'orders', (SELECT count(*) FROM orders), 'step', ''
    UNION ALL SELECT 2, 'Excluded: cancelled', 'orders', (SELECT count(*) FROM orders WHERE verdict = 'excluded'), 'exclusion', ''
    UNION ALL SELECT 3, 'Evaluated orders', 'orders',
           (SELECT count(*) FROM orders WHERE verdict IN ('appropriate', 'inappropriate', 'review')), 'step', ''
    UNION ALL SELECT 4, 'Orders with contrast (inappropriate)', 'orders',
           (SELECT count(*) FROM orders WHERE verdict = 'inappropriate'), 'step', ''
)
