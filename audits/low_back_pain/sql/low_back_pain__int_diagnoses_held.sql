-- From which site-local date the diagnoses the warehouse holds are complete (DESIGN.md section 4.6, "A look-back
-- before the data"), one row: int_feeds_held's rule (the site's declared start, else the first month with half
-- the busiest month's diagnoses). An episode indexed less than negative_history_days after it has a look-back
-- that reaches before the diagnoses held, so "new" is not verified; report/verified_from.sql adds the days (the
-- metrics feed's `verified_from`, the first page's note). NULL when no dated diagnosis is held.
SELECT
    held_from AS diagnoses_held_from,
    earlier_rows AS earlier_diagnoses,
    is_declared_start
FROM low_back_pain__int_feeds_held
WHERE feed = 'diagnoses'
