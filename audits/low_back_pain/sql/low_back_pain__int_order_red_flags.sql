-- The red-flag groups among each order's own indication codes, for every order of a case patient
-- (audited or not, lumbar or not, cancelled or not: the clinician recorded the condition). Codes
-- compare in dotless upper-case form, joined on their three-character category. A code counts while
-- in force at the order's time; an order without a time matches its code whatever the dates (it can
-- then only exclude that order: it has no date to be evidence at).
-- The split is a lateral join (CROSS JOIN unnest(...) AS s(listed_code)), not unnest inside an
-- expression: Spark explodes only at the top of a select (docs/SQL_PORTABILITY.md).
WITH listed AS (
    SELECT
        o.order_id,
        o.patient_id,
        o.ordered_at,
        o.ordered_local_date,
        s.listed_code
    FROM low_back_pain__int_case_patient_orders AS o
    CROSS JOIN unnest(string_split(o.indication_codes, '|')) AS s(listed_code)
    WHERE o.indication_codes IS NOT NULL
),
codes AS (
    SELECT order_id, patient_id, ordered_at, ordered_local_date, upper(replace(trim(listed_code), '.', '')) AS code_norm
    FROM listed
)
SELECT DISTINCT
    c.order_id,
    c.patient_id,
    c.ordered_at,
    c.ordered_local_date,
    g.red_flag_group,
    g.group_order
FROM codes AS c
JOIN low_back_pain__ref_value_sets AS vs
  ON substr(vs.code_norm, 1, 3) = substr(c.code_norm, 1, 3)
 AND ((vs.match = 'exact' AND vs.code_norm = c.code_norm) OR (vs.match = 'prefix' AND starts_with(c.code_norm, vs.code_norm)))
JOIN low_back_pain__int_red_flag_groups AS g ON g.value_set = vs.value_set
WHERE c.ordered_at IS NULL
   OR (c.ordered_at >= vs.valid_from_at AND (vs.valid_until_at IS NULL OR c.ordered_at < vs.valid_until_at))
