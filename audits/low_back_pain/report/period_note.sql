-- What the first page must say of the period's episodes: whether the look-back that makes an episode new
-- (no low back pain diagnosis in the negative_history_days before the index date) lies within the
-- diagnoses held. In the first months of an extract it reaches before them, so "new" cannot be verified
-- there (the other end of the data's reach from "provisional"). The diagnoses are complete from the first
-- month holding at least half as many as the busiest month: an extract often carries a few older rows
-- (a problem list's history), and the earliest of those would claim years of history the feed does not hold.
-- One row when some episode of the period is indexed before its look-back is covered; none otherwise.
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
),
reach AS (
    SELECT
        held.complete_from,
        CAST((SELECT coalesce(sum(diagnoses), 0) FROM monthly WHERE month < held.complete_from) AS BIGINT)
            AS earlier_diagnoses,
        prm.negative_history_days AS history_days,
        CAST(held.complete_from + prm.negative_history_days * INTERVAL 1 DAY AS DATE) AS verified_from
    FROM held
    CROSS JOIN prm
),
episodes AS (
    SELECT
        count(*) AS episodes,
        count(*) FILTER (WHERE c.index_date < r.verified_from) AS unverified,
        count(*) FILTER (WHERE c.index_date < r.verified_from AND c.outcome IN ('no_early_imaging', 'early_imaging'))
            AS unverified_judged,
        count(*) FILTER (WHERE c.outcome IN ('no_early_imaging', 'early_imaging')) AS judged
    FROM low_back_pain__mart_cases AS c
    CROSS JOIN reach AS r
)
SELECT r.complete_from, r.earlier_diagnoses, r.history_days, r.verified_from, e.episodes, e.unverified,
       e.unverified_judged, e.judged
FROM reach AS r
CROSS JOIN episodes AS e
WHERE e.unverified > 0
