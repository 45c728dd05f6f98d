-- What the first page must say of the period's episodes: whether the look-back that makes an episode new
-- (no low back pain diagnosis in the negative_history_days before the index date) lies within the
-- diagnoses held. In the first months of an extract it reaches before them, so "new" cannot be verified
-- there (the other end of the data's reach from "provisional"). How far back the diagnoses reach is
-- verified_from.sql's row (its one home: the metrics feed reads it too), given here as $parameters.
-- One row when some episode of the period is indexed before its look-back is covered; none otherwise.
WITH reach AS (
    SELECT
        CAST($complete_from AS DATE) AS complete_from,
        CAST($earlier_diagnoses AS BIGINT) AS earlier_diagnoses,
        CAST($history_days AS INTEGER) AS history_days,
        CAST($verified_from AS DATE) AS verified_from
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
