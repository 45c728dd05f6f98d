-- Attach each auditable order of a case patient to at most one case.
-- In window (index <= ordered_at <= index + window): the most recent index wins.
-- Nearby but outside every window (context days before the index or after the window):
-- listed against the nearest case as outside_window. No time: the most recent case.
WITH orders AS (
    SELECT o.*, coalesce(f.has_red_flag, false) AS has_red_flag
    FROM csf_leak__int_case_patient_orders AS o
    LEFT JOIN csf_leak__int_order_indication_flags AS f ON f.order_id = o.order_id
    WHERE o.is_auditable
),
timed AS (
    SELECT
        o.order_id, c.case_id,
        o.ordered_at >= c.index_at
            AND epoch(o.ordered_at) - epoch(c.index_at) <= prm.audit_window_days * 86400 AS is_in_window,
        abs(epoch(o.ordered_at) - epoch(c.index_at)) AS distance_seconds,
        c.index_at
    FROM orders AS o
    JOIN csf_leak__int_cases AS c ON c.patient_id = o.patient_id
    CROSS JOIN csf_leak__parameters AS prm
    WHERE o.ordered_at IS NOT NULL
      AND epoch(o.ordered_at) - epoch(c.index_at) >= -prm.outside_window_context_days * 86400
      AND epoch(o.ordered_at) - epoch(c.index_at)
          <= (prm.audit_window_days + prm.outside_window_context_days) * 86400
),
timed_ranked AS (
    SELECT *, row_number() OVER (
        PARTITION BY order_id
        ORDER BY is_in_window DESC,
                 CASE WHEN is_in_window THEN -epoch(index_at) ELSE distance_seconds END,
                 case_id
    ) AS pick
    FROM timed
),
untimed AS (
    SELECT o.order_id, c.case_id, CAST(NULL AS BOOLEAN) AS is_in_window,
           row_number() OVER (PARTITION BY o.order_id ORDER BY c.index_at DESC, c.case_id DESC) AS pick
    FROM orders AS o
    JOIN csf_leak__int_cases AS c ON c.patient_id = o.patient_id
    WHERE o.ordered_at IS NULL
),
assigned AS (
    SELECT order_id, case_id, is_in_window FROM timed_ranked WHERE pick = 1
    UNION ALL
    SELECT order_id, case_id, is_in_window FROM untimed WHERE pick = 1
)
SELECT
    a.case_id,
    c.patient_id,
    c.index_at,
    o.order_id,
    o.ordered_at,
    CAST(timezone(prm.site_timezone, o.ordered_at) AS DATE) AS ordered_local_date,
    (epoch(o.ordered_at) - epoch(c.index_at)) / 3600.0 AS hours_since_index,
    o.order_code, o.order_name, o.ordering_department, o.ordering_provider_id,
    o.indication_codes, o.indication_text, o.status, o.priority,
    o.is_cancelled, o.has_red_flag, o.is_mapped, o.study_type, o.modality, o.regions, o.contrast,
    a.is_in_window,
    -- eligible orders make up the imaging episodes
    coalesce(a.is_in_window, false) AND o.is_mapped AND NOT o.is_cancelled AND NOT o.has_red_flag
        AND o.ordered_at IS NOT NULL AS is_eligible
FROM assigned AS a
JOIN orders AS o ON o.order_id = a.order_id
JOIN csf_leak__int_cases AS c ON c.case_id = a.case_id
CROSS JOIN csf_leak__parameters AS prm
