-- How far back the diagnoses held reach, for the episodes' look-back (no low back pain diagnosis in the
-- negative_history_days before the index date): over the whole warehouse, not the run's period. Its one row is
-- the metrics feed's `verified_from` (docs/METRICS_FEED.md, `look_back`: the feed carries 24 months, and a --month
-- run of a verified month still shows the first months of the data) and the $parameters of period_note.sql.
-- The day the diagnoses are held from is the model int_diagnoses_held's (the site's declared start, else the
-- first month with half the busiest month's diagnoses), built once per run: a page's render reads its one row.
-- NULL dates when no diagnosis is held (then there is no episode either).
SELECT
    h.diagnoses_held_from AS complete_from,
    h.earlier_diagnoses,
    h.is_declared_start,
    prm.negative_history_days AS history_days,
    CAST(h.diagnoses_held_from + prm.negative_history_days * INTERVAL 1 DAY AS DATE) AS verified_from
FROM low_back_pain__int_diagnoses_held AS h
CROSS JOIN low_back_pain__parameters AS prm
