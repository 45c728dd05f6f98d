-- What the first page must say of the period's episodes: whether the look-back that makes an episode new
-- (no low back pain diagnosis in the negative_history_days before the index date) lies within the
-- diagnoses held. In the first months of an extract it reaches before them, so "new" cannot be verified
-- there (the other end of the data's reach from "provisional"). How far back the diagnoses reach is
-- verified_from.sql's row (its one home: the metrics feed reads it too), given here as $parameters; *_declared:
-- the day held is the start the site declares for its extract ([extract] data_since), not the volume's guess.
-- One row (kind 'look_back') when some episode of the period is indexed before its look-back is covered. A second
-- (kind 'orders_held') when some uncomplicated episode of the period is indexed before the orders held
-- (int_orders_held, DESIGN.md section 8): its early imaging could be before the orders and unseen, so it is in no
-- rate's N, and the headline's N is smaller than the period's episodes say. None when neither holds.
WITH reach AS (
    SELECT
        CAST($complete_from AS DATE) AS complete_from,
        CAST($earlier_diagnoses AS BIGINT) AS earlier_diagnoses,
        CAST($is_declared_start AS BOOLEAN) AS diagnoses_declared,
        CAST($history_days AS INTEGER) AS history_days,
        CAST($verified_from AS DATE) AS verified_from
),
episodes AS (
    SELECT
        count(*) AS episodes,
        count(*) FILTER (WHERE c.index_date < r.verified_from) AS unverified,
        count(*) FILTER (WHERE c.index_date < r.verified_from AND c.outcome IN ('no_early_imaging', 'early_imaging'))
            AS unverified_judged,
        count(*) FILTER (WHERE c.outcome IN ('no_early_imaging', 'early_imaging')) AS judged,
        count(*) FILTER (WHERE c.is_window_before_orders AND NOT c.is_complicated) AS before_orders
    FROM low_back_pain__mart_cases AS c
    CROSS JOIN reach AS r
),
held AS (
    SELECT h.orders_held_from, h.earlier_orders, h.is_declared_start AS orders_declared, prm.early_imaging_days
    FROM low_back_pain__int_orders_held AS h
    CROSS JOIN low_back_pain__parameters AS prm
)
SELECT 1 AS note_order, 'look_back' AS kind, r.complete_from, r.earlier_diagnoses, r.diagnoses_declared,
       r.history_days, r.verified_from, e.episodes, e.unverified, e.unverified_judged, e.judged, e.before_orders,
       h.orders_held_from, h.earlier_orders, h.orders_declared, h.early_imaging_days
FROM reach AS r
CROSS JOIN episodes AS e
CROSS JOIN held AS h
WHERE e.unverified > 0
UNION ALL
SELECT 2, 'orders_held', r.complete_from, r.earlier_diagnoses, r.diagnoses_declared,
       r.history_days, r.verified_from, e.episodes, e.unverified, e.unverified_judged, e.judged, e.before_orders,
       h.orders_held_from, h.earlier_orders, h.orders_declared, h.early_imaging_days
FROM reach AS r
CROSS JOIN episodes AS e
CROSS JOIN held AS h
WHERE e.before_orders > 0
ORDER BY note_order
