-- From which site-local date the imaging orders the warehouse holds are complete (DESIGN.md section 8, "An
-- imaging window before the orders held"): over the whole warehouse, not the run's period, one row. An episode
-- indexed before it has days of its early-imaging window (days 0..early_imaging_days) that no order held covers:
-- early imaging there would be invisible, and the episode would count as the best outcome with nothing seen.
-- The rule is verified_from.sql's for the diagnoses: the orders are held from the first site-local month with at
-- least half as many orders as the busiest month, so a few stray older orders (an extract's odd earlier rows)
-- do not claim months the feed does not cover. Orders without a date count in no month. NULL when no dated order
-- is held: then no episode's window is covered.
WITH prm AS (
    SELECT site_timezone FROM low_back_pain__parameters
),
-- each dated order's site-local month (a model built once per run: verified_from.sql's 15-minute buckets, which
-- spare a page's render the conversion, use epoch_us, which Trino and Spark do not have)
monthly AS (
    SELECT date_trunc('month', CAST(timezone(prm.site_timezone, o.ordered_at) AS DATE)) AS month, count(*) AS orders
    FROM stg_imaging_orders AS o
    CROSS JOIN prm
    WHERE o.ordered_at IS NOT NULL
    GROUP BY 1
),
held AS (
    SELECT CAST(min(month) FILTER (WHERE orders * 2 >= (SELECT max(orders) FROM monthly)) AS DATE) AS orders_held_from
    FROM monthly
)
SELECT
    held.orders_held_from,
    CAST((SELECT coalesce(sum(orders), 0) FROM monthly WHERE month < held.orders_held_from) AS BIGINT)
        AS earlier_orders
FROM held
