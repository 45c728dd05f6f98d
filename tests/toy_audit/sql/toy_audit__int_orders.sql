-- The orders the audit reads: head CT (the merged code map's ct_head, in force at the order), of
-- patients at least adult_age_years old (whole years, patients.birth_date) at the site-local order date.
WITH orders AS (
    SELECT o.*, CAST(timezone(prm.site_timezone, o.ordered_at) AS DATE) AS ordered_local_date, prm.adult_age_years
    FROM stg_imaging_orders AS o
    CROSS JOIN toy_audit__parameters AS prm
    WHERE o.ordered_at IS NOT NULL
)
SELECT
    o.order_id,
    o.patient_id,
    o.ordered_at,
    strftime(o.ordered_local_date, '%Y-%m') AS order_month,
    o.ordered_local_date,
    o.order_code,
    o.order_name,
    o.ordering_department,
    o.ordering_provider_id,
    o.status,
    o.is_cancelled,
    m.study_type,
    m.contrast
FROM orders AS o
JOIN stg_patients AS p ON p.patient_id = o.patient_id
JOIN ref_imaging_codes AS m
       ON m.code = o.order_code AND o.ordered_at >= m.valid_from_at AND (m.valid_until_at IS NULL OR o.ordered_at < m.valid_until_at)
WHERE date_sub('year', p.birth_date, o.ordered_local_date) >= o.adult_age_years
  AND m.study_type = 'ct_head'
