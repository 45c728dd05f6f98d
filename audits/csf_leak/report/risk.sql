-- Leak rate among the adult index procedures of the period by each risk factor the procedure log
-- records: n = cases, N = adult index procedures; on a department's page, those performed there.
WITH ix AS (
    SELECT * FROM csf_leak__mart_index_procedures WHERE $department IS NULL OR department = $department
),
factors AS (
    SELECT 1 AS factor_order, 'Needle type' AS label, CAST(needle_type AS VARCHAR) AS value, is_adult, is_case FROM ix
    UNION ALL SELECT 2, 'Needle gauge', CAST(needle_gauge AS VARCHAR), is_adult, is_case FROM ix
    UNION ALL SELECT 3, 'Attempts', CAST(attempts AS VARCHAR), is_adult, is_case FROM ix
    UNION ALL SELECT 4, 'Patient position', CAST(patient_position AS VARCHAR), is_adult, is_case FROM ix
)
SELECT factor_order, label, coalesce(value, 'not recorded') AS value,
       count(*) FILTER (WHERE is_case) AS numerator,
       count(*) FILTER (WHERE is_adult) AS denominator,
       count(value) AS recorded
FROM factors
GROUP BY factor_order, label, coalesce(value, 'not recorded')
ORDER BY factor_order, value
