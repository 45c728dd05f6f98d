-- One row per (case, order, reason that fired). Exclusions are judged first, then whether
-- the order can be judged at all; only judged orders get clinical reasons.
WITH gates AS (
    SELECT
        f.*,
        f.is_cancelled AS r_cancelled,
        f.has_red_flag AS r_red_flag_indication,
        f.ordered_at IS NOT NULL AND NOT coalesce(f.is_in_window, false) AS r_outside_window
    FROM int_order_flags AS f
),
gated AS (
    SELECT
        g.*,
        NOT g.is_mapped AND NOT (g.r_cancelled OR g.r_red_flag_indication OR g.r_outside_window) AS r_unmapped_code,
        g.ordered_at IS NULL AND NOT (g.r_cancelled OR g.r_red_flag_indication) AS r_missing_time,
        g.is_eligible AS is_judged
    FROM gates AS g
),
flags AS (
    SELECT
        g.*,
        g.is_judged AND g.hours_since_index < prm.premature_hours AS r_premature,
        g.is_judged AND g.effective_study_type = 'mri_spine' AND g.contrast = 'with'
            AND NOT g.regions_have_noncontrast AS r_contrast_only,
        g.is_judged AND NOT g.is_subsequent AND g.effective_study_type = 'mri_spine'
            AND NOT g.is_complete_coverage AS r_wrong_region,
        g.is_judged AND NOT g.is_subsequent AND g.effective_study_type IN ('ct_head', 'ct_spine') AS r_ct_initial,
        g.is_judged AND NOT g.is_subsequent AND g.effective_study_type = 'ct_myelography' AS r_ct_myelography_initial,
        g.is_judged AND NOT g.is_subsequent AND g.effective_study_type = 'cisternography' AS r_cisternography_initial,
        g.is_judged AND NOT g.is_subsequent AND g.effective_study_type = 'mr_myelography' AS r_mr_myelography_initial,
        g.is_judged AND NOT g.is_subsequent AND g.effective_study_type = 'mri_spine' AND g.is_complete_coverage
            AND g.contrast = 'without' AND NOT g.regions_have_contrast AS r_noncontrast_only,
        g.is_judged AND NOT g.is_subsequent AND g.effective_study_type IN ('dsm', 'myelography') AS r_dsm_initial,
        g.is_judged AND NOT g.is_subsequent AND g.effective_study_type = 'mri_brain'
            AND NOT g.is_complete_coverage AS r_brain_only_initial,
        g.is_judged AND NOT g.is_subsequent AND g.effective_study_type = 'mri_spine' AND g.is_complete_coverage
            AND g.regions_have_noncontrast AND g.regions_have_contrast AS r_mri_complete_spine_wwo,
        g.is_judged AND NOT g.is_subsequent AND g.effective_study_type = 'mri_brain'
            AND g.is_complete_coverage AS r_brain_mri_companion,
        g.is_judged AND g.is_subsequent AS r_subsequent_after_mri
    FROM gated AS g
    CROSS JOIN audit_parameters AS prm
)
SELECT f.case_id, f.order_id, r.reason_code, r.rule_id, r.rule_order, r.verdict, v.precedence
FROM flags AS f
JOIN ref_rules AS r ON CASE r.reason_code
        WHEN 'cancelled' THEN f.r_cancelled
        WHEN 'red_flag_indication' THEN f.r_red_flag_indication
        WHEN 'outside_window' THEN f.r_outside_window
        WHEN 'unmapped_code' THEN f.r_unmapped_code
        WHEN 'missing_time' THEN f.r_missing_time
        WHEN 'premature' THEN f.r_premature
        WHEN 'contrast_only' THEN f.r_contrast_only
        WHEN 'wrong_region' THEN f.r_wrong_region
        WHEN 'ct_initial' THEN f.r_ct_initial
        WHEN 'ct_myelography_initial' THEN f.r_ct_myelography_initial
        WHEN 'cisternography_initial' THEN f.r_cisternography_initial
        WHEN 'mr_myelography_initial' THEN f.r_mr_myelography_initial
        WHEN 'noncontrast_only' THEN f.r_noncontrast_only
        WHEN 'dsm_initial' THEN f.r_dsm_initial
        WHEN 'brain_only_initial' THEN f.r_brain_only_initial
        WHEN 'mri_complete_spine_wwo' THEN f.r_mri_complete_spine_wwo
        WHEN 'brain_mri_companion' THEN f.r_brain_mri_companion
        WHEN 'subsequent_after_mri' THEN f.r_subsequent_after_mri
        ELSE false
    END
JOIN ref_verdicts AS v ON v.verdict = r.verdict
