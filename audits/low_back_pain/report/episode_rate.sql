-- The HEDIS-style episode rate of the period: episodes without lumbar imaging in the first
-- early_imaging_days days (n) out of the episodes judged either way (N), overall, by index month and by
-- the index diagnosis's setting; beside it the episodes that could not be judged and the complicated
-- (excluded) ones. The rate is the hospital's: the diagnoses feed names no department, so on a
-- department's page the rows are the same (the page's department does not split them).
-- Every row also carries what the methods must say of the data: whether the feed has the setting and
-- position columns (else any setting or position starts an episode) and how far back "any time
-- before" reaches (the earliest diagnosis and order the warehouse holds). A month's row says whether the month
-- starts before $verified_from (verified_from.sql, bound by the engine): its episodes look back past the diagnoses
-- held, as the metrics feed marks it (look_back = 'before_data'); it stays in the total, as in the headline.
-- before_orders: the not-evaluable episodes indexed before the imaging orders held (int_orders_held, DESIGN.md
-- section 8), whose early imaging could not be seen; the note under the table names them apart.
WITH feed AS (
    SELECT
        coalesce(bool_or(table_name = 'diagnoses' AND column_name = 'setting'), false) AS has_setting,
        coalesce(bool_or(table_name = 'diagnoses' AND column_name IN ('is_principal', 'diagnosis_rank')), false)
            AS has_position
    FROM input_columns
),
reach AS (
    SELECT
        CAST(timezone(prm.site_timezone, (SELECT min(recorded_at) FROM stg_diagnoses)) AS DATE) AS earliest_diagnosis,
        CAST(timezone(prm.site_timezone, (SELECT min(ordered_at) FROM stg_imaging_orders)) AS DATE) AS earliest_order
    FROM low_back_pain__parameters AS prm
),
grouped AS (
    SELECT 1 AS group_order, 'All episodes' AS grouping, 'all' AS group_key, outcome, is_window_before_orders
    FROM low_back_pain__mart_cases
    UNION ALL
    SELECT 2, 'Index month', index_month, outcome, is_window_before_orders FROM low_back_pain__mart_cases
    UNION ALL
    SELECT 3, 'Setting of the index diagnosis', coalesce(index_setting, 'not recorded'), outcome, is_window_before_orders
    FROM low_back_pain__mart_cases
),
counted AS (
    SELECT
        group_order,
        grouping,
        group_key,
        count(*) AS episodes,
        count(*) FILTER (WHERE outcome = 'no_early_imaging') AS numerator,
        count(*) FILTER (WHERE outcome IN ('no_early_imaging', 'early_imaging')) AS denominator,
        count(*) FILTER (WHERE outcome = 'early_imaging') AS early_imaging,
        count(*) FILTER (WHERE outcome = 'not_evaluable') AS not_evaluable,
        count(*) FILTER (WHERE outcome = 'not_evaluable' AND is_window_before_orders) AS before_orders,
        count(*) FILTER (WHERE outcome = 'excluded') AS excluded
    FROM grouped
    GROUP BY group_order, grouping, group_key
)
SELECT c.*, f.has_setting, f.has_position, r.earliest_diagnosis, r.earliest_order, h.orders_held_from,
       -- ISO dates compared as text: a CAST of the group key would be tried on the settings' rows too
       coalesce(c.group_order = 2 AND c.group_key || '-01' < CAST(CAST($verified_from AS DATE) AS VARCHAR), false)
           AS before_data,
       CAST($verified_from AS DATE) AS verified_from,
       CAST($history_days AS INTEGER) AS history_days
FROM counted AS c
CROSS JOIN feed AS f
CROSS JOIN reach AS r
CROSS JOIN low_back_pain__int_orders_held AS h
ORDER BY c.group_order, c.group_key
