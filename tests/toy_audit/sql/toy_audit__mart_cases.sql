-- The cases of the period (by the site-local index month).
SELECT c.*
FROM toy_audit__int_case_summary AS c
CROSS JOIN audit_period AS per
WHERE (per.first_month IS NULL OR c.index_month >= per.first_month)
  AND (per.last_month IS NULL OR c.index_month <= per.last_month)
