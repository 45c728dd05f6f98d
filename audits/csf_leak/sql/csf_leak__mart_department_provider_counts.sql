-- The period's provider figures within each department, for the department pages: order
-- measures by the order's department and provider, the case measure by the department and
-- provider of the case's first evaluated imaging order (the attribution of csf_leak__mart_metric_counts,
-- split by department instead of summed over the hospital).
WITH orders AS (
    SELECT coalesce(ordering_department, '(not recorded)') AS department,
           coalesce(ordering_provider_id, '(not recorded)') AS provider_key,
           verdict IN ('appropriate', 'inappropriate', 'review') AS is_evaluated,
           verdict,
           is_premature
    FROM csf_leak__mart_audited_orders
),
cases AS (
    SELECT coalesce(first_imaging_department, '(not recorded)') AS department,
           coalesce(first_imaging_provider_id, '(not recorded)') AS provider_key,
           first_imaging_right_study
    FROM csf_leak__mart_cases WHERE first_imaging_right_study IS NOT NULL
)
SELECT department, provider_key, 'inappropriate_order_rate' AS measure_id,
       count(*) FILTER (WHERE verdict = 'inappropriate') AS numerator,
       count(*) FILTER (WHERE is_evaluated) AS denominator
FROM orders GROUP BY department, provider_key
UNION ALL
SELECT department, provider_key, 'premature_order_rate',
       count(*) FILTER (WHERE is_evaluated AND is_premature), count(*) FILTER (WHERE is_evaluated)
FROM orders GROUP BY department, provider_key
UNION ALL
SELECT department, provider_key, 'first_imaging_right_study',
       count(*) FILTER (WHERE first_imaging_right_study), count(*)
FROM cases GROUP BY department, provider_key
