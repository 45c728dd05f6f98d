-- The red-flag groups (DESIGN.md section 5) in the order the outputs list them, each with its value
-- set and how far before the index date its evidence counts: lookback_days (days), lookback_months
-- (calendar months), or neither (any time before: as far back as the data go). Every group counts up
-- to red_flag_days_after_index days after the index date.
SELECT 'cancer' AS red_flag_group, 1 AS group_order, 'red_flag_cancer' AS value_set,
       CAST(NULL AS BIGINT) AS lookback_days, CAST(NULL AS BIGINT) AS lookback_months
UNION ALL SELECT 'trauma', 2, 'red_flag_trauma', CAST(red_flag_trauma_lookback_days AS BIGINT), NULL
FROM low_back_pain__parameters
UNION ALL SELECT 'iv_drug_use', 3, 'red_flag_iv_drug_use', NULL, CAST(red_flag_iv_drug_use_lookback_months AS BIGINT)
FROM low_back_pain__parameters
UNION ALL SELECT 'neurological', 4, 'red_flag_neurological', NULL, CAST(red_flag_neurological_lookback_months AS BIGINT)
FROM low_back_pain__parameters
UNION ALL SELECT 'hiv', 5, 'red_flag_hiv', NULL, NULL
UNION ALL SELECT 'spinal_infection', 6, 'red_flag_spinal_infection', NULL,
                 CAST(red_flag_spinal_infection_lookback_months AS BIGINT)
FROM low_back_pain__parameters
UNION ALL SELECT 'organ_transplant', 7, 'red_flag_organ_transplant', NULL, NULL
UNION ALL SELECT 'steroids', 8, 'red_flag_steroids', NULL, CAST(red_flag_steroids_lookback_months AS BIGINT)
FROM low_back_pain__parameters
UNION ALL SELECT 'osteoporosis', 9, 'red_flag_osteoporosis', NULL, CAST(red_flag_osteoporosis_lookback_months AS BIGINT)
FROM low_back_pain__parameters
UNION ALL SELECT 'ankylosing_spondylitis', 10, 'red_flag_ankylosing_spondylitis', NULL, NULL
UNION ALL SELECT 'palliative_care', 11, 'red_flag_palliative_care', NULL,
                 CAST(red_flag_palliative_care_lookback_months AS BIGINT)
FROM low_back_pain__parameters
