-- One row per audited (case, order): one boolean per rule of rules.csv (its flag_column). The
-- engine turns them into reasons and one verdict (csf_leak__int_order_reasons, _verdicts).
-- Exclusions are judged first, then whether the order can be judged at all; only judged orders
-- get clinical flags.
WITH gates AS (
    SELECT
        f.*,
        f.ordered_at IS NOT NULL AND NOT coalesce(f.is_in_window, false) AS is_outside_window
    FROM csf_leak__int_order_facts AS f
),
gated AS (
    SELECT
        g.*,
        NOT g.is_mapped AND NOT (g.is_cancelled OR g.has_red_flag OR g.is_outside_window) AS is_unmapped_code,
        g.ordered_at IS NULL AND NOT (g.is_cancelled OR g.has_red_flag) AS is_missing_time,
        g.is_eligible AS is_judged
    FROM gates AS g
)
SELECT
    g.case_id,
    g.order_id,
    coalesce(g.is_cancelled, false) AS is_cancelled,
    coalesce(g.has_red_flag, false) AS has_red_flag_indication,
    coalesce(g.is_outside_window, false) AS is_outside_window,
    coalesce(g.is_unmapped_code, false) AS is_unmapped_code,
    coalesce(g.is_missing_time, false) AS is_missing_time,
    coalesce(g.is_judged AND g.hours_since_index < prm.premature_hours, false) AS is_premature,
    coalesce(g.is_judged AND g.effective_study_type = 'mri_spine' AND g.contrast = 'with'
        AND NOT g.regions_have_noncontrast, false) AS is_contrast_only,
    coalesce(g.is_judged AND NOT g.is_subsequent AND g.effective_study_type = 'mri_spine'
        AND NOT g.is_complete_coverage, false) AS is_wrong_region,
    coalesce(g.is_judged AND NOT g.is_subsequent AND g.effective_study_type IN ('ct_head', 'ct_spine'), false) AS is_ct_initial,
    coalesce(g.is_judged AND NOT g.is_subsequent AND g.effective_study_type = 'ct_myelography', false)
        AS is_ct_myelography_initial,
    coalesce(g.is_judged AND NOT g.is_subsequent AND g.effective_study_type = 'cisternography', false)
        AS is_cisternography_initial,
    coalesce(g.is_judged AND NOT g.is_subsequent AND g.effective_study_type = 'mr_myelography', false)
        AS is_mr_myelography_initial,
    coalesce(g.is_judged AND NOT g.is_subsequent AND g.effective_study_type = 'mri_spine' AND g.is_complete_coverage
        AND g.contrast = 'without' AND NOT g.regions_have_contrast, false) AS is_noncontrast_only,
    coalesce(g.is_judged AND NOT g.is_subsequent AND g.effective_study_type IN ('dsm', 'myelography'), false) AS is_dsm_initial,
    coalesce(g.is_judged AND NOT g.is_subsequent AND g.effective_study_type = 'mri_brain'
        AND NOT g.is_complete_coverage, false) AS is_brain_only_initial,
    coalesce(g.is_judged AND NOT g.is_subsequent AND g.effective_study_type = 'mri_spine' AND g.is_complete_coverage
        AND g.regions_have_noncontrast AND g.regions_have_contrast, false) AS is_mri_complete_spine_wwo,
    coalesce(g.is_judged AND NOT g.is_subsequent AND g.effective_study_type = 'mri_brain'
        AND g.is_complete_coverage, false) AS is_brain_mri_companion,
    coalesce(g.is_judged AND g.is_subsequent, false) AS is_subsequent_after_mri
FROM gated AS g
CROSS JOIN csf_leak__parameters AS prm
