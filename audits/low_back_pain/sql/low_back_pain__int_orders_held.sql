-- From which site-local date the imaging orders the warehouse holds are complete (DESIGN.md section 8, "An
-- imaging window before the orders held"), one row: int_feeds_held's rule (the site's declared start, else the
-- first month with half the busiest month's orders). An episode indexed before it has days of its early-imaging
-- window (days 0..early_imaging_days) that no order held covers: early imaging there would be invisible, and the
-- episode would count as the best outcome with nothing seen. NULL when no dated order is held: then no episode's
-- window is covered.
SELECT
    held_from AS orders_held_from,
    earlier_rows AS earlier_orders,
    is_declared_start
FROM low_back_pain__int_feeds_held
WHERE feed = 'imaging_orders'
