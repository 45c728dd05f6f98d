-- Anchored imaging episodes per case: an episode starts at its first eligible order and
-- takes every order placed within episode_hours of that first order (not chained).
-- DuckDB-specific: a recursive CTE (the walk is sequential by nature; cases have few orders).
WITH RECURSIVE numbered AS (
    SELECT case_id, order_id, ordered_at,
           row_number() OVER (PARTITION BY case_id ORDER BY ordered_at, order_id) AS rn
    FROM csf_leak__int_case_orders
    WHERE is_eligible
),
walk AS (
    SELECT case_id, order_id, ordered_at, rn, ordered_at AS episode_start_at, 1 AS episode_number
    FROM numbered
    WHERE rn = 1
    UNION ALL
    SELECT
        n.case_id, n.order_id, n.ordered_at, n.rn,
        CASE WHEN epoch(n.ordered_at) - epoch(w.episode_start_at) > prm.episode_hours * 3600
             THEN n.ordered_at ELSE w.episode_start_at END,
        CASE WHEN epoch(n.ordered_at) - epoch(w.episode_start_at) > prm.episode_hours * 3600
             THEN w.episode_number + 1 ELSE w.episode_number END
    FROM walk AS w
    JOIN numbered AS n ON n.case_id = w.case_id AND n.rn = w.rn + 1
    CROSS JOIN csf_leak__parameters AS prm
)
SELECT case_id, order_id, episode_number, episode_start_at
FROM walk
