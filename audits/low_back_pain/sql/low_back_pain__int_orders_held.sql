-- From which site-local date the imaging orders the warehouse holds are complete (DESIGN.md section 8, "An
-- imaging window before the orders held"): over the whole warehouse, not the run's period, one row. An episode
-- indexed before it has days of its early-imaging window (days 0..early_imaging_days) that no order held covers:
-- early imaging there would be invisible, and the episode would count as the best outcome with nothing seen.
-- The rule is int_diagnoses_held's for the diagnoses. When the site declares where its extract starts ([extract]
-- data_since: declared_start_date, the first site-local day it holds whole), the orders are held from that day.
-- Otherwise they are held from the first site-local month with at least half as many orders as the busiest month,
-- so a few stray older orders (an extract's odd earlier rows) do not claim months the feed does not cover; a site
-- whose volume more than doubles over its data (a hospital joining) sees its early months cut, which is what the
-- declaration is for. Orders without a date count in no day. earlier_orders: the dated orders before the day
-- held. NULL when no dated order is held, declared or not (an empty feed shows nothing held): then no episode's
-- window is covered.
WITH prm AS (
    SELECT site_timezone, declared_start_date FROM low_back_pain__parameters
),
-- each dated order's site-local day, through 15 minutes of absolute time: the time zone conversion runs
-- on each bucket's first instant (~70k buckets over two years) instead of every row (5M: 0.9 -> 0.25 CPU-s a run).
-- Exact: the UTC offsets in use (since the 1970s), and the instants clocks change at, lie on the 15-minute grid,
-- so every instant of a bucket falls on one site-local day. epoch() is portable (each engine's shim); epoch_us,
-- which report/verified_from.sql's buckets used, is DuckDB's only.
buckets AS (
    SELECT min(o.ordered_at) AS first_at, count(*) AS orders
    FROM stg_imaging_orders AS o
    WHERE o.ordered_at IS NOT NULL
    GROUP BY CAST(floor(epoch(o.ordered_at) / 900) AS BIGINT)
),
daily AS (
    SELECT CAST(timezone(prm.site_timezone, b.first_at) AS DATE) AS day, sum(b.orders) AS orders
    FROM buckets AS b
    CROSS JOIN prm
    GROUP BY 1
),
monthly AS (
    SELECT CAST(date_trunc('month', day) AS DATE) AS month, sum(orders) AS orders
    FROM daily
    GROUP BY 1
),
busy AS (
    SELECT min(month) FILTER (WHERE orders * 2 >= (SELECT max(orders) FROM monthly)) AS first_busy_month
    FROM monthly
),
held AS (
    SELECT
        CASE WHEN busy.first_busy_month IS NOT NULL
             THEN coalesce(prm.declared_start_date, busy.first_busy_month) END AS orders_held_from,
        busy.first_busy_month IS NOT NULL AND prm.declared_start_date IS NOT NULL AS is_declared_start
    FROM busy
    CROSS JOIN prm
)
SELECT
    held.orders_held_from,
    CAST((SELECT coalesce(sum(orders), 0) FROM daily WHERE day < held.orders_held_from) AS BIGINT) AS earlier_orders,
    held.is_declared_start
FROM held
