-- Every imaging order of a case patient (the only orders that can be audited or hold a red flag that
-- matters), with its site-local date and what the run's one code map says of its code. Filtered to
-- the case patients straight from staging, before any per-row work.
-- A map row counts while in force at the order's time; an order without a time takes its code's row
-- whatever its dates (the row in force today first, should a site map list the code twice).
WITH orders AS (
    SELECT o.*
    FROM stg_imaging_orders AS o
    WHERE o.patient_id IN (SELECT patient_id FROM low_back_pain__int_patients)
),
mapped AS (
    SELECT
        o.order_id,
        m.study_type,
        m.modality,
        m.regions,
        m.contrast,
        row_number() OVER (
            PARTITION BY o.order_id ORDER BY m.valid_until_at IS NULL DESC, m.valid_from_at DESC
        ) AS pick
    FROM orders AS o
    JOIN ref_imaging_codes AS m
      ON m.code = o.order_code
     AND (o.ordered_at IS NULL
          OR (o.ordered_at >= m.valid_from_at AND (m.valid_until_at IS NULL OR o.ordered_at < m.valid_until_at)))
)
SELECT
    o.order_id,
    o.patient_id,
    o.ordered_at,
    CAST(timezone(prm.site_timezone, o.ordered_at) AS DATE) AS ordered_local_date,
    o.order_code,
    o.order_name,
    o.ordering_department,
    o.ordering_provider_id,
    o.indication_codes,
    o.status,
    o.is_cancelled,
    m.order_id IS NOT NULL AS is_mapped,
    m.study_type,
    m.modality,
    coalesce(m.regions, '') AS regions,
    m.contrast
FROM orders AS o
LEFT JOIN mapped AS m ON m.order_id = o.order_id AND m.pick = 1
CROSS JOIN low_back_pain__parameters AS prm
