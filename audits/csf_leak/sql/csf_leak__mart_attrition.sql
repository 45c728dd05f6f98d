-- From every procedure of the period down to flagged orders; each step says what it counts,
-- and exclusion rows say why units left between two steps. row_order: a row's place within its
-- step_order (the reasons' rows in rule order), as the report and attrition.csv list them.
WITH per AS (SELECT * FROM audit_period),
procs AS (
    SELECT p.*, strftime(p.performed_local_date, '%Y-%m') AS month
    FROM stg_procedures AS p, per
    WHERE (per.first_month IS NULL OR strftime(p.performed_local_date, '%Y-%m') >= per.first_month)
      AND (per.last_month IS NULL OR strftime(p.performed_local_date, '%Y-%m') <= per.last_month)
),
ix AS (SELECT * FROM csf_leak__mart_index_procedures),
orders AS (SELECT * FROM csf_leak__mart_audited_orders),
cases AS (SELECT * FROM csf_leak__mart_cases),
-- an excluded or not-evaluable order leaves once, under its winning reason: the first of its
-- reasons in rule order (an order both cancelled and red-flagged counts as cancelled); the note
-- says how many of the units counted there carry a further reason of the same verdict
winning AS (
    SELECT r.reason_code,
           count(o.order_id) AS n,
           CASE WHEN count(o.order_id) FILTER (WHERE strpos(o.reasons, '|') > 0) > 0
                THEN ' (' || count(o.order_id) FILTER (WHERE strpos(o.reasons, '|') > 0)
                     || CASE WHEN count(o.order_id) FILTER (WHERE strpos(o.reasons, '|') > 0) = 1
                             THEN ' of these also carries' ELSE ' of these also carry' END
                     || ' a later reason of this kind; each order is counted once, under its first reason)'
                ELSE '' END AS overlap_note
    FROM csf_leak__ref_rules AS r
    LEFT JOIN orders AS o ON o.verdict = r.verdict AND split_part(o.reasons, '|', 1) = r.reason_code
    WHERE r.verdict IN ('excluded', 'not_evaluable')
    GROUP BY r.reason_code
),
steps AS (
    SELECT 1 AS step_order, 'Procedures in the period' AS step, 'procedures' AS unit,
           (SELECT count(*) FROM procs) AS count, 'step' AS kind, '' AS note, 1 AS row_order
    UNION ALL SELECT 1, 'Not a lumbar dural-puncture procedure (cervical/thoracic counterpart)', 'procedures',
           (SELECT count(*) FROM procs AS p WHERE EXISTS
               (SELECT 1 FROM csf_leak__ref_value_sets AS vs WHERE vs.value_set = 'out_of_scope_procedure'
                  AND vs.code_norm = p.procedure_code AND p.performed_at >= vs.valid_from_at AND (vs.valid_until_at IS NULL OR p.performed_at < vs.valid_until_at))),
           'exclusion', 'cervical and thoracic injections are outside the default scope', 2
    UNION ALL SELECT 1, 'Not a lumbar dural-puncture procedure (other codes)', 'procedures',
           (SELECT count(*) FROM procs AS p WHERE NOT EXISTS
               (SELECT 1 FROM csf_leak__ref_value_sets AS vs WHERE vs.value_set IN ('index_procedure', 'out_of_scope_procedure')
                  AND vs.code_norm = p.procedure_code AND p.performed_at >= vs.valid_from_at AND (vs.valid_until_at IS NULL OR p.performed_at < vs.valid_until_at))),
           'exclusion', 'includes blood patches and unrelated procedures', 3
    UNION ALL SELECT 2, 'Index procedures (lumbar, can puncture the dura)', 'procedures', (SELECT count(*) FROM ix), 'step', '', 1
    UNION ALL SELECT 2, 'Index procedures: patients', 'patients', (SELECT count(DISTINCT patient_key) FROM ix), 'step', '', 2
    UNION ALL SELECT 2, 'Under the minimum age at the procedure', 'procedures',
           (SELECT count(*) FROM ix WHERE NOT is_adult AND NOT is_age_unknown), 'exclusion', '', 3
    UNION ALL SELECT 2, 'Age unknown (no birth date or age, or an impossible age)', 'procedures',
           (SELECT count(*) FROM ix WHERE is_age_unknown), 'exclusion', 'cannot tell whether adult: not audited; an age outside 0-130 is nulled at load; a partial birth date '
           || '(a year, a year and month) across the minimum age is unknown', 4
    UNION ALL SELECT 3, 'Index procedures in adults', 'procedures', (SELECT count(*) FROM ix WHERE is_adult), 'step', '', 1
    UNION ALL SELECT 3, 'No leak evidence attached', 'procedures',
           (SELECT count(*) FROM ix WHERE is_adult AND NOT has_leak_evidence AND NOT has_late_evidence_only),
           'exclusion', 'no leak diagnosis, leak indication or blood patch attached to this procedure', 2
    UNION ALL SELECT 3, 'Leak evidence only after the evidence window', 'procedures',
           (SELECT count(*) FROM ix WHERE is_adult AND NOT has_leak_evidence AND has_late_evidence_only),
           'exclusion', '', 3
    UNION ALL SELECT 4, 'Cases (adult index procedure with leak evidence)', 'cases', (SELECT count(*) FROM cases), 'step', '', 1
    UNION ALL SELECT 4, 'Cases: patients', 'patients', (SELECT count(DISTINCT patient_key) FROM cases), 'step', '', 2
    UNION ALL SELECT 4, 'Cases without audited imaging in the window', 'cases',
           (SELECT count(*) FROM cases WHERE n_evaluated + n_not_evaluable = 0), 'exclusion', '', 3
    UNION ALL SELECT 5, 'Cases with imaging in the window', 'cases',
           (SELECT count(*) FROM cases WHERE n_evaluated + n_not_evaluable > 0), 'step', '', 1
    UNION ALL SELECT 6, 'Audited orders (listed)', 'orders', (SELECT count(*) FROM orders), 'step', '', 0
    UNION ALL SELECT 6, 'Excluded: ' || r.reason_code, 'orders', w.n, 'exclusion', r.explanation || w.overlap_note, r.rule_order
    FROM csf_leak__ref_rules AS r JOIN winning AS w ON w.reason_code = r.reason_code WHERE r.verdict = 'excluded'
    UNION ALL SELECT 7, 'Orders in the window, not excluded', 'orders',
           (SELECT count(*) FROM orders WHERE verdict <> 'excluded'), 'step', '', 0
    UNION ALL SELECT 7, 'Not evaluable: ' || r.reason_code, 'orders', w.n, 'exclusion', r.explanation || w.overlap_note, r.rule_order
    FROM csf_leak__ref_rules AS r JOIN winning AS w ON w.reason_code = r.reason_code WHERE r.verdict = 'not_evaluable'
    UNION ALL SELECT 8, 'Evaluated orders', 'orders',
           (SELECT count(*) FROM orders WHERE verdict IN ('appropriate', 'inappropriate', 'review')), 'step', '', 1
    UNION ALL SELECT 9, 'Flagged orders (inappropriate)', 'orders',
           (SELECT count(*) FROM orders WHERE verdict = 'inappropriate'), 'step', '', 1
    UNION ALL SELECT 9, 'Review findings', 'orders',
           (SELECT count(*) FROM orders WHERE verdict = 'review'), 'step', 'reported apart: guidance differs', 2
)
SELECT step_order, step, unit, count, kind, note, row_order FROM steps
