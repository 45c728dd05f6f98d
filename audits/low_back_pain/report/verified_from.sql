-- How far back the diagnoses held reach, for the episodes' look-back (no low back pain diagnosis in the
-- negative_history_days before the index date): over the whole warehouse, not the run's period. Its one row is
-- the metrics feed's `verified_from` (docs/METRICS_FEED.md, `look_back`: the feed carries 24 months, and a --month
-- run of a verified month still shows the first months of the data) and the $parameters of period_note.sql.
-- The diagnoses are complete from the first month holding at least half as many as the busiest month: an
-- extract often carries a few older rows (a problem list's history), and the earliest of those would claim
-- years of history the feed does not hold. NULL dates when no diagnosis is held (then there is no episode either).
WITH prm AS (
    SELECT site_timezone, negative_history_days FROM low_back_pain__parameters
),
-- Diagnoses per 15 minutes of absolute time, then the site-local month of each bucket's start: the time zone
-- conversion runs on the buckets (~70k over two years) instead of every diagnosis (5M: 0.63 -> 0.11 CPU-s a
-- page's render). UTC offsets are on the 15-minute grid; a bucket across a local month's start (an offset off
-- the grid) counts in the month it starts in, a few diagnoses at most against a threshold of half a month's.
buckets AS (
    SELECT CAST(floor(epoch_us(recorded_at) / 900000000) AS BIGINT) AS bucket, count(*) AS diagnoses
    FROM stg_diagnoses
    GROUP BY 1
),
monthly AS (
    SELECT
        date_trunc('month', CAST(timezone(prm.site_timezone, to_timestamp(b.bucket * 900)) AS DATE)) AS month,
        sum(b.diagnoses) AS diagnoses
    FROM buckets AS b
    CROSS JOIN prm
    GROUP BY 1
),
held AS (
    SELECT
        CAST(min(month) FILTER (WHERE diagnoses * 2 >= (SELECT max(diagnoses) FROM monthly)) AS DATE) AS complete_from
    FROM monthly
)
SELECT
    held.complete_from,
    CAST((SELECT coalesce(sum(diagnoses), 0) FROM monthly WHERE month < held.complete_from) AS BIGINT)
        AS earlier_diagnoses,
    prm.negative_history_days AS history_days,
    CAST(held.complete_from + prm.negative_history_days * INTERVAL 1 DAY AS DATE) AS verified_from
FROM held
CROSS JOIN prm
