-- The audited orders of the period's cases (by the index date's site-local month).
SELECT o.*
FROM low_back_pain__int_audited_orders AS o
CROSS JOIN audit_period AS per
WHERE (per.first_month IS NULL OR o.case_index_month >= per.first_month)
  AND (per.last_month IS NULL OR o.case_index_month <= per.last_month)
