-- From which site-local date each feed the warehouse holds is complete (DESIGN.md section 8, "Where the feeds are
-- held from"): over the whole warehouse, not the run's period, one row a feed, 'diagnoses' and 'imaging_orders'.
-- int_diagnoses_held and int_orders_held read their own row: the diagnoses' day bounds the episodes' look-back
-- (report/verified_from.sql), the orders' day the early-imaging window (an episode indexed before it is
-- not_evaluable). One rule for both feeds, written once. When the site declares where its extract starts
-- ([extract] data_since: declared_start_date, the first site-local day it holds whole), a feed is held from that
-- day. Otherwise it is held from the first site-local month with at least half as many rows as its busiest month:
-- an extract often carries a few older rows (a problem list's history, an odd earlier order), and the earliest of
-- those would claim months the feed does not cover; a site whose volume more than doubles over its data (a
-- hospital joining) sees its early months cut, which is what the declaration is for. Rows without a date count in
-- no day. earlier_rows: the feed's dated rows before the day held. held_from is NULL when the feed has no dated
-- row, declared or not (an empty feed holds nothing).
WITH prm AS (
    SELECT site_timezone, declared_start_date FROM low_back_pain__parameters
),
feeds AS (
    SELECT 'diagnoses' AS feed
    UNION ALL
    SELECT 'imaging_orders'
),
dated AS (
    SELECT 'diagnoses' AS feed, d.recorded_at AS dated_at FROM stg_diagnoses AS d WHERE d.recorded_at IS NOT NULL
    UNION ALL
    SELECT 'imaging_orders', o.ordered_at FROM stg_imaging_orders AS o WHERE o.ordered_at IS NOT NULL
),
-- each dated row's site-local day, through 15 minutes of absolute time: the time zone conversion runs on each
-- bucket's first instant (~70k buckets over two years) instead of every row (5M: 0.9 -> 0.25 CPU-s a run).
-- Exact: the UTC offsets in use (since the 1970s), and the instants clocks change at, lie on the 15-minute grid,
-- so every instant of a bucket falls on one site-local day. epoch() is portable (each engine's shim); epoch_us
-- is DuckDB's only.
buckets AS (
    SELECT feed, min(dated_at) AS first_at, count(*) AS n_rows
    FROM dated
    GROUP BY feed, CAST(floor(epoch(dated_at) / 900) AS BIGINT)
),
daily AS (
    SELECT b.feed, CAST(timezone(prm.site_timezone, b.first_at) AS DATE) AS day, sum(b.n_rows) AS n_rows
    FROM buckets AS b
    CROSS JOIN prm
    GROUP BY 1, 2
),
monthly AS (
    SELECT feed, CAST(date_trunc('month', day) AS DATE) AS month, sum(n_rows) AS n_rows
    FROM daily
    GROUP BY 1, 2
),
busiest AS (
    SELECT feed, max(n_rows) AS n_rows FROM monthly GROUP BY feed
),
busy AS (
    SELECT m.feed, min(m.month) FILTER (WHERE m.n_rows * 2 >= top.n_rows) AS first_busy_month
    FROM monthly AS m
    JOIN busiest AS top ON top.feed = m.feed
    GROUP BY m.feed
),
held AS (
    SELECT
        f.feed,
        CASE WHEN busy.first_busy_month IS NOT NULL
             THEN coalesce(prm.declared_start_date, busy.first_busy_month) END AS held_from,
        coalesce(busy.first_busy_month IS NOT NULL AND prm.declared_start_date IS NOT NULL, false) AS is_declared_start
    FROM feeds AS f
    LEFT JOIN busy ON busy.feed = f.feed
    CROSS JOIN prm
),
earlier AS (
    SELECT d.feed, sum(d.n_rows) AS n_rows
    FROM daily AS d
    JOIN held AS h ON h.feed = d.feed AND d.day < h.held_from
    GROUP BY d.feed
)
SELECT
    held.feed,
    held.held_from,
    CAST(coalesce(earlier.n_rows, 0) AS BIGINT) AS earlier_rows,
    held.is_declared_start
FROM held
LEFT JOIN earlier ON earlier.feed = held.feed
