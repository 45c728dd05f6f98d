-- Per audited (case, order): the facts the rules read. Effective study type resolves
-- CT myelography, which has no code of its own (CT spine "with contrast" on the day of an
-- intrathecal injection; the injection order itself takes the CT's verdict when paired).
SELECT
    o.*,
    e.episode_number,
    e.episode_start_at,
    cov.is_complete_coverage,
    coalesce(f.first_complete_episode IS NOT NULL AND e.episode_number > f.first_complete_episode, false)
        AS is_subsequent,
    CASE
        WHEN o.study_type = 'ct_spine' AND o.contrast = 'with'
             AND EXISTS (SELECT 1 FROM csf_leak__int_intrathecal_days AS d
                         WHERE d.case_id = o.case_id AND d.injection_local_date = o.ordered_local_date)
            THEN 'ct_myelography'
        WHEN o.study_type = 'myelography_injection'
             AND EXISTS (SELECT 1 FROM csf_leak__int_case_orders AS ct
                         WHERE ct.case_id = o.case_id AND ct.is_eligible AND ct.study_type = 'ct_spine'
                           AND ct.contrast = 'with' AND ct.ordered_local_date = o.ordered_local_date)
            THEN 'ct_myelography'
        WHEN o.study_type = 'myelography_injection' THEN 'myelography'
        ELSE o.study_type
    END AS effective_study_type,
    -- does every spine region of this order have non-contrast / contrast sequences in its episode?
    (NOT (strpos(o.regions, 'C') > 0) OR cov.noncontrast_c) AND (NOT (strpos(o.regions, 'T') > 0) OR cov.noncontrast_t)
        AND (NOT (strpos(o.regions, 'L') > 0) OR cov.noncontrast_l) AS regions_have_noncontrast,
    (NOT (strpos(o.regions, 'C') > 0) OR cov.contrast_c) AND (NOT (strpos(o.regions, 'T') > 0) OR cov.contrast_t)
        AND (NOT (strpos(o.regions, 'L') > 0) OR cov.contrast_l) AS regions_have_contrast
FROM csf_leak__int_case_orders AS o
LEFT JOIN csf_leak__int_imaging_episodes AS e ON e.case_id = o.case_id AND e.order_id = o.order_id
LEFT JOIN csf_leak__int_episode_coverage AS cov ON cov.case_id = e.case_id AND cov.episode_number = e.episode_number
LEFT JOIN csf_leak__int_case_first_complete_mri AS f ON f.case_id = o.case_id
