-- The metrics feed's `verified_from` (docs/METRICS_FEED.md, `look_back`): the first site-local date whose episodes
-- have their whole negative_history_days look-back within the diagnoses held, so "new" is verified from then on.
-- The same reach as period_note.sql's (the diagnoses complete from the first month holding at least half as many
-- as the busiest month, and the look-back after it), for every month of the feed rather than the run's period:
-- the feed carries 24 months, and a --month run of a verified month still shows the first months of the data.
-- One row; NULL when no diagnosis is held (then there is no episode either).
WITH prm AS (
    SELECT site_timezone, negative_history_days FROM low_back_pain__parameters
),
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
)
SELECT CAST(
    CAST(min(m.month) FILTER (WHERE m.diagnoses * 2 >= (SELECT max(diagnoses) FROM monthly)) AS DATE)
    + any_value(prm.negative_history_days) * INTERVAL 1 DAY AS DATE
) AS verified_from
FROM monthly AS m
CROSS JOIN prm
