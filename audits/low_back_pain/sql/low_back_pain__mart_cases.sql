-- The cases (episodes) of the period, by the index date's site-local month.
SELECT c.*
FROM low_back_pain__int_case_summary AS c
CROSS JOIN audit_period AS per
WHERE (per.first_month IS NULL OR c.index_month >= per.first_month)
  AND (per.last_month IS NULL OR c.index_month <= per.last_month)
