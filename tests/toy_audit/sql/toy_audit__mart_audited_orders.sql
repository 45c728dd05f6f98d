-- The audited orders of the period's cases (by the case's site-local index month).
SELECT o.*
FROM toy_audit__int_audited_orders AS o
CROSS JOIN audit_period AS per
WHERE (per.first_month IS NULL OR o.case_index_month >= per.first_month)
  AND (per.last_month IS NULL OR o.case_index_month <= per.last_month)
