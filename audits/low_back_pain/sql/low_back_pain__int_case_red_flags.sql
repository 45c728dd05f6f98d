-- The red-flag groups that make each case complicated: evidence of the group dated within its window
-- around the index date, inclusive. Before the index: lookback_days days, or lookback_months calendar
-- months (2024-06-03 - 12 months = 2023-06-03; a month end clamps: 2024-03-31 - 1 month =
-- 2024-02-29), or any time for groups without a look-back. After: red_flag_days_after_index days.
-- The months are counted with year/month/day arithmetic (an evidence date `months_back` months before
-- the index's month is inside when fewer than lookback_months, or exactly that many and on or after
-- the index's day of the month, or on the last day of a shorter month), which every SQL engine has.
WITH paired AS (
    SELECT
        c.case_id,
        c.index_date,
        e.evidence_date,
        g.red_flag_group,
        g.group_order,
        g.lookback_days,
        g.lookback_months,
        (year(c.index_date) - year(e.evidence_date)) * 12 + month(c.index_date) - month(e.evidence_date) AS months_back
    FROM low_back_pain__int_cases AS c
    JOIN low_back_pain__int_red_flag_evidence AS e ON e.patient_id = c.patient_id
    JOIN low_back_pain__int_red_flag_groups AS g ON g.red_flag_group = e.red_flag_group
    CROSS JOIN low_back_pain__parameters AS prm
    WHERE date_diff('day', c.index_date, e.evidence_date) <= prm.red_flag_days_after_index
)
SELECT DISTINCT case_id, red_flag_group, group_order
FROM paired
WHERE CASE
    WHEN lookback_days IS NOT NULL THEN date_diff('day', evidence_date, index_date) <= lookback_days
    WHEN lookback_months IS NOT NULL THEN
        months_back < lookback_months
        OR (months_back = lookback_months
            AND (day(evidence_date) >= day(index_date) OR evidence_date = last_day(evidence_date)))
    ELSE true
END
