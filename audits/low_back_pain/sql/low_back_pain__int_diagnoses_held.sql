-- From which site-local date the diagnoses the warehouse holds are complete (DESIGN.md section 4.6, "A look-back
-- before the data"): over the whole warehouse, not the run's period, one row. An episode indexed less than
-- negative_history_days after it has a look-back that reaches before the diagnoses held, so "new" is not
-- verified; report/verified_from.sql adds the days (the metrics feed's `verified_from`, the first page's note).
-- The rule is int_orders_held's for the orders. When the site declares where its extract starts ([extract]
-- data_since: declared_start_date, the first site-local day it holds whole), the diagnoses are held from that
-- day. Otherwise they are held from the first site-local month with at least half as many diagnoses as the
-- busiest month: an extract often carries a few older rows (a problem list's history), and the earliest of those
-- would claim years of history the feed does not hold; a site whose volume more than doubles over its data (a
-- hospital joining) sees its early months cut, which is what the declaration is for. Diagnoses without a date
-- count in no day (they start no episode). earlier_diagnoses: the dated diagnoses before the day held. NULL
-- when no dated diagnosis is held, declared or not (then there is no episode either).
WITH prm AS (
    SELECT site_timezone, declared_start_date FROM low_back_pain__parameters
),
-- each dated diagnosis's site-local day: the time zone conversion over every diagnosis, once per run (5M: about
-- 0.5 CPU-s), where verified_from.sql did it at every page's render through 15-minute buckets and epoch_us,
-- which Trino and Spark do not have
daily AS (
    SELECT CAST(timezone(prm.site_timezone, d.recorded_at) AS DATE) AS day, count(*) AS diagnoses
    FROM stg_diagnoses AS d
    CROSS JOIN prm
    WHERE d.recorded_at IS NOT NULL
    GROUP BY 1
),
monthly AS (
    SELECT CAST(date_trunc('month', day) AS DATE) AS month, sum(diagnoses) AS diagnoses
    FROM daily
    GROUP BY 1
),
busy AS (
    SELECT min(month) FILTER (WHERE diagnoses * 2 >= (SELECT max(diagnoses) FROM monthly)) AS first_busy_month
    FROM monthly
),
held AS (
    SELECT
        CASE WHEN busy.first_busy_month IS NOT NULL
             THEN coalesce(prm.declared_start_date, busy.first_busy_month) END AS diagnoses_held_from,
        busy.first_busy_month IS NOT NULL AND prm.declared_start_date IS NOT NULL AS is_declared_start
    FROM busy
    CROSS JOIN prm
)
SELECT
    held.diagnoses_held_from,
    CAST((SELECT coalesce(sum(diagnoses), 0) FROM daily WHERE day < held.diagnoses_held_from) AS BIGINT)
        AS earlier_diagnoses,
    held.is_declared_start
FROM held
