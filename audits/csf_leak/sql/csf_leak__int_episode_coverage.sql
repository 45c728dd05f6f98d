-- Per episode: which spine regions its MRI orders cover, with and without contrast,
-- and whether an intrathecal injection happened that local day (CT myelography).
WITH spine AS (
    SELECT
        e.case_id, e.episode_number,
        bool_or(o.study_type = 'mri_spine') AS has_spine_mri,
        bool_or(o.study_type = 'mri_spine' AND strpos(o.regions, 'C') > 0) AS covers_c,
        bool_or(o.study_type = 'mri_spine' AND strpos(o.regions, 'T') > 0) AS covers_t,
        bool_or(o.study_type = 'mri_spine' AND strpos(o.regions, 'L') > 0) AS covers_l,
        bool_or(o.study_type = 'mri_spine' AND strpos(o.regions, 'C') > 0 AND o.contrast IN ('without', 'without_and_with')) AS noncontrast_c,
        bool_or(o.study_type = 'mri_spine' AND strpos(o.regions, 'T') > 0 AND o.contrast IN ('without', 'without_and_with')) AS noncontrast_t,
        bool_or(o.study_type = 'mri_spine' AND strpos(o.regions, 'L') > 0 AND o.contrast IN ('without', 'without_and_with')) AS noncontrast_l,
        bool_or(o.study_type = 'mri_spine' AND strpos(o.regions, 'C') > 0 AND o.contrast IN ('with', 'without_and_with')) AS contrast_c,
        bool_or(o.study_type = 'mri_spine' AND strpos(o.regions, 'T') > 0 AND o.contrast IN ('with', 'without_and_with')) AS contrast_t,
        bool_or(o.study_type = 'mri_spine' AND strpos(o.regions, 'L') > 0 AND o.contrast IN ('with', 'without_and_with')) AS contrast_l
    FROM csf_leak__int_imaging_episodes AS e
    JOIN csf_leak__int_case_orders AS o ON o.case_id = e.case_id AND o.order_id = e.order_id
    GROUP BY e.case_id, e.episode_number
)
SELECT
    s.*,
    s.covers_c AND s.covers_t AND s.covers_l AS is_complete_coverage,
    s.noncontrast_c AND s.noncontrast_t AND s.noncontrast_l AS is_complete_noncontrast
FROM spine AS s
