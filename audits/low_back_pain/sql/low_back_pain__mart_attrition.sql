-- From every low back pain diagnosis of the period down to early-imaging orders; each step says what
-- it counts, and exclusion rows say why units left between two steps (DESIGN.md section 9). Diagnoses
-- and candidate dates count by their site-local date, episodes by their index date, orders by their
-- case's index month. row_order: a row's place within its step_order (the reasons' rows in rule order,
-- the red flags in their groups' order), as the report and attrition.csv list them.
WITH per AS (SELECT * FROM audit_period),
-- the position and setting rows say whether they were checked at all: without the column in the
-- extract every diagnosis passes them, and a bare 0 would read as a check that found nothing
feed AS (
    SELECT
        coalesce(bool_or(column_name = 'setting'), false) AS has_setting,
        coalesce(bool_or(column_name IN ('is_principal', 'diagnosis_rank')), false) AS has_position
    FROM input_columns
    WHERE table_name = 'diagnoses'
),
dx AS (
    SELECT d.*
    FROM low_back_pain__int_lbp_diagnoses AS d, per
    WHERE (per.first_month IS NULL OR strftime(d.diagnosis_date, '%Y-%m') >= per.first_month)
      AND (per.last_month IS NULL OR strftime(d.diagnosis_date, '%Y-%m') <= per.last_month)
),
dates AS (
    SELECT cd.*
    FROM low_back_pain__int_candidate_dates AS cd, per
    WHERE (per.first_month IS NULL OR strftime(cd.index_date, '%Y-%m') >= per.first_month)
      AND (per.last_month IS NULL OR strftime(cd.index_date, '%Y-%m') <= per.last_month)
),
episodes AS (
    SELECT e.*
    FROM low_back_pain__int_episodes AS e, per
    WHERE (per.first_month IS NULL OR strftime(e.index_date, '%Y-%m') >= per.first_month)
      AND (per.last_month IS NULL OR strftime(e.index_date, '%Y-%m') <= per.last_month)
),
cases AS (SELECT * FROM low_back_pain__mart_cases),
orders AS (SELECT * FROM low_back_pain__mart_audited_orders),
case_groups AS (
    SELECT r.red_flag_group, r.group_order, count(*) AS n
    FROM low_back_pain__int_case_red_flags AS r
    JOIN cases AS c ON c.case_id = r.case_id
    GROUP BY r.red_flag_group, r.group_order
),
-- an excluded or not-evaluable order leaves once, under its winning reason: the first of its reasons
-- in rule order; the note says how many carry a further reason of the same verdict
winning AS (
    SELECT
        r.reason_code,
        count(o.order_id) AS n,
        count(o.order_id) FILTER (WHERE strpos(o.reasons, '|') > 0) AS n_more
    FROM low_back_pain__ref_rules AS r
    LEFT JOIN orders AS o ON o.verdict = r.verdict AND split_part(o.reasons, '|', 1) = r.reason_code
    WHERE r.verdict IN ('excluded', 'not_evaluable')
    GROUP BY r.reason_code
),
reason_rows AS (  -- the exclusion row of each reason (excluded and not evaluable alike)
    SELECT r.verdict, r.reason_code, r.rule_order, w.n,
           r.explanation || CASE WHEN w.n_more > 0
               THEN ' (' || CAST(w.n_more AS VARCHAR)
                    || CASE WHEN w.n_more = 1 THEN ' of these also carries' ELSE ' of these also carry' END
                    || ' a later reason of this kind; '
                    || 'each order is counted once, under its first reason)'
               ELSE '' END AS note
    FROM low_back_pain__ref_rules AS r JOIN winning AS w ON w.reason_code = r.reason_code
),
steps AS (
    SELECT 1 AS step_order, 'Low back pain diagnoses (lbp_uncomplicated) in the period' AS step, 'diagnoses' AS unit,
           (SELECT count(*) FROM dx) AS count, 'step' AS kind, '' AS note, 0 AS row_order
    UNION ALL SELECT 1, 'Not the principal diagnosis', 'diagnoses',
           (SELECT count(*) FROM dx WHERE NOT is_principal_ok AND NOT is_position_unknown), 'exclusion',
           CASE WHEN f.has_position
               THEN 'the feed marks the diagnosis position; only a principal diagnosis starts an episode'
               ELSE 'not checked: the extract has no position column (is_principal or diagnosis_rank), '
                    || 'so a secondary diagnosis starts an episode too' END,
           1
    FROM feed AS f
    UNION ALL SELECT 1, 'Position not recorded', 'diagnoses',
           (SELECT count(*) FROM dx WHERE is_position_unknown), 'exclusion',
           CASE WHEN f.has_position THEN 'the feed has a position column; a diagnosis counted here leaves it empty'
               ELSE 'not checked: the extract has no position column' END,
           2
    FROM feed AS f
    UNION ALL SELECT 1, 'Inpatient', 'diagnoses',
           (SELECT count(*) FROM dx WHERE is_principal_ok AND NOT is_setting_ok AND NOT is_setting_unknown), 'exclusion',
           CASE WHEN f.has_setting
               THEN 'HEDIS counts outpatient-type settings only (outpatient, emergency, observation, telehealth)'
               ELSE 'not checked: the extract has no setting column, so an inpatient diagnosis starts an episode too'
           END,
           3
    FROM feed AS f
    UNION ALL SELECT 1, 'Setting not recorded', 'diagnoses',
           (SELECT count(*) FROM dx WHERE is_principal_ok AND is_setting_unknown), 'exclusion',
           CASE WHEN f.has_setting THEN 'the feed has a setting column; a diagnosis counted here leaves it empty'
               ELSE 'not checked: the extract has no setting column' END,
           4
    FROM feed AS f
    UNION ALL SELECT 2, 'Index-eligible diagnoses', 'diagnoses',
           (SELECT count(*) FROM dx WHERE is_principal_ok AND is_setting_ok), 'step', '', 0
    UNION ALL SELECT 3, 'Candidate index dates (patient and site-local date)', 'dates',
           (SELECT count(*) FROM dates), 'step', 'several eligible diagnoses of a patient on one date are one candidate', 0
    UNION ALL SELECT 3, 'Recurrence: a low back pain diagnosis in the ' || CAST(prm.negative_history_days AS VARCHAR)
           || ' days before', 'dates', (SELECT count(*) FROM dates WHERE NOT is_new_episode), 'exclusion',
           'any low back pain diagnosis counts as history, in any setting and position', 1
    FROM low_back_pain__parameters AS prm
    UNION ALL SELECT 4, 'New episodes', 'episodes', (SELECT count(*) FROM episodes), 'step', '', 0
    UNION ALL SELECT 4, 'Under ' || CAST(prm.min_age_years AS VARCHAR) || ' at the index date', 'episodes',
           (SELECT count(*) FROM episodes WHERE age_years_max < prm.min_age_years), 'exclusion', '', 1
    FROM low_back_pain__parameters AS prm
    UNION ALL SELECT 4, 'Over ' || CAST(prm.max_age_years AS VARCHAR) || ' at the index date', 'episodes',
           (SELECT count(*) FROM episodes WHERE age_years_min > prm.max_age_years), 'exclusion', '', 2
    FROM low_back_pain__parameters AS prm
    -- an age range (a partial birth date) that crosses a bound is neither under, over nor a case
    UNION ALL SELECT 4, 'Age unknown', 'episodes', (SELECT count(*) FROM episodes WHERE NOT coalesce(
               age_years_max < prm.min_age_years OR age_years_min > prm.max_age_years
               OR (age_years_min >= prm.min_age_years AND age_years_max <= prm.max_age_years), false)), 'exclusion',
           'no birth date in the patients table or the procedure rows, and no age recorded on the index date; '
           || 'or a partial birth date (a year, a year and month) across an age bound', 3
    FROM low_back_pain__parameters AS prm
    UNION ALL SELECT 5, 'Episodes (new, in the age range)', 'episodes', (SELECT count(*) FROM cases), 'step', '', 1
    UNION ALL SELECT 5, 'Episodes: patients', 'patients', (SELECT count(DISTINCT patient_key) FROM cases), 'step', '', 2
    UNION ALL SELECT 5, 'Complicated: red flag ' || g.red_flag_group, 'episodes', g.n, 'exclusion',
           'an episode with several red-flag groups is counted under each', g.group_order
    FROM case_groups AS g
    UNION ALL SELECT 6, 'Uncomplicated episodes', 'episodes',
           (SELECT count(*) FROM cases WHERE NOT is_complicated), 'step', '', 0
    UNION ALL SELECT 6, 'Imaging window before the orders held', 'episodes',
           (SELECT count(*) FROM cases WHERE NOT is_complicated AND is_window_before_orders), 'exclusion',
           CASE WHEN h.orders_held_from IS NULL
               THEN 'no dated imaging order is held, so no episode''s early imaging can be seen; not judged (not in the rate)'
               ELSE 'indexed before ' || strftime(h.orders_held_from, '%Y-%m-%d')
                    || CASE WHEN h.is_declared_start
                        THEN ', the first day of the orders held (the start the site declares for its extract)'
                        ELSE ', the first day of the orders held' END
                    || ': lumbar imaging on days 0-'
                    || CAST(prm.early_imaging_days AS VARCHAR)
                    || ' could be before them and unseen, so the episode is not judged (not in the rate)'
                    || CASE WHEN h.earlier_orders > 0
                        THEN ' (' || CAST(h.earlier_orders AS VARCHAR)
                             || CASE WHEN h.earlier_orders = 1 THEN ' earlier order is' ELSE ' earlier orders are' END
                             || CASE WHEN h.is_declared_start
                                 THEN ' held: rows from before the declared start, not a complete record)'
                                 ELSE ' held: scattered rows, not a complete record)' END
                        ELSE '' END
           END,
           1
    FROM low_back_pain__parameters AS prm CROSS JOIN low_back_pain__int_orders_held AS h
    UNION ALL SELECT 7, 'Uncomplicated episodes whose imaging window the orders held cover (the HEDIS-style denominator before imaging)', 'episodes',
           (SELECT count(*) FROM cases WHERE NOT is_complicated AND NOT is_window_before_orders), 'step', '', 0
    UNION ALL SELECT 7, 'Uncomplicated episodes without audited imaging on days 0-'
           || CAST(prm.audit_window_days AS VARCHAR), 'episodes',
           (SELECT count(*) FROM cases WHERE NOT is_complicated AND NOT is_window_before_orders AND n_orders = 0),
           'exclusion', 'they count in the rate as episodes without early imaging', 1
    FROM low_back_pain__parameters AS prm
    UNION ALL SELECT 8, 'Uncomplicated episodes with audited orders', 'episodes',
           (SELECT count(*) FROM cases WHERE NOT is_complicated AND NOT is_window_before_orders AND n_orders > 0),
           'step', '', 0
    UNION ALL SELECT 9, 'Audited orders (listed)', 'orders', (SELECT count(*) FROM orders), 'step',
           'lumbar imaging (or an unmapped code) on days 0-' || CAST(prm.audit_window_days AS VARCHAR)
           || ' of an episode, complicated or not', 0
    FROM low_back_pain__parameters AS prm
    UNION ALL SELECT 9, 'Excluded: ' || reason_code, 'orders', n, 'exclusion', note, rule_order FROM reason_rows WHERE verdict = 'excluded'
    UNION ALL SELECT 10, 'Orders not excluded', 'orders', (SELECT count(*) FROM orders WHERE verdict <> 'excluded'), 'step', '', 0
    UNION ALL SELECT 10, 'Not evaluable: ' || reason_code, 'orders', n, 'exclusion', note, rule_order
    FROM reason_rows WHERE verdict = 'not_evaluable'
    UNION ALL SELECT 11, 'Evaluated orders', 'orders',
           (SELECT count(*) FROM orders WHERE verdict IN ('appropriate', 'inappropriate')), 'step', '', 0
    UNION ALL SELECT 12, 'Early-imaging orders (inappropriate)', 'orders',
           (SELECT count(*) FROM orders WHERE verdict = 'inappropriate'), 'step', '', 0
)
SELECT step_order, step, unit, count, kind, note, row_order FROM steps
