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
-- each dated diagnosis's site-local day, through 15 minutes of absolute time: the time zone conversion runs
-- on each bucket's first instant (~70k buckets over two years) instead of every row (5M: 0.9 -> 0.25 CPU-s a run).
-- Exact: the UTC offsets in use (since the 1970s), and the instants clocks change at, lie on the 15-minute grid,
-- so every instant of a bucket falls on one site-local day. epoch() is portable (each engine's shim); epoch_us,
-- which report/verified_from.sql's buckets used, is DuckDB's only.
buckets AS (
    SELECT min(d.recorded_at) AS first_at, count(*) AS diagnoses
    FROM stg_diagnoses AS d
    WHERE d.recorded_at IS NOT NULL
    GROUP BY CAST(floor(epoch(d.recorded_at) / 900) AS BIGINT)
),
daily AS (
    SELECT CAST(timezone(prm.site_timezone, b.first_at) AS DATE) AS day, sum(b.diagnoses) AS diagnoses
    FROM buckets AS b
    CROSS JOIN prm
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
