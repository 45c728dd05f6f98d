-- Steps 1 and 2 of an episode (DESIGN.md section 4): every diagnosis whose code is in
-- lbp_uncomplicated on its date, with its site-local date and whether it may start an episode.
-- With a position column in the feed (is_principal or diagnosis_rank) only a principal row may
-- (is_principal decides; else rank 1); with a setting column only an outpatient-type setting may.
-- An empty value there does not qualify. Without the columns every row may (input_columns says which
-- the extracts hold: an absent column reads as NULL, like an empty one).
-- Codes compare in dotless upper-case form, exact rows by equality and prefix rows by prefix. The
-- value set is joined on the three-character category every ICD-10-CM code starts with, so the
-- semi-join is a hash join on a small table; a row counts while in force at the diagnosis's time.
-- The categories' IN list comes first: it drops the other diagnoses before the EXISTS, whose range
-- test DuckDB runs as a grouping of every distinct (code, time) pair it is given (1.1M at case-dense
-- 10M: half this model's time).
WITH feed AS (
    SELECT
        coalesce(bool_or(column_name = 'setting'), false) AS has_setting,
        coalesce(bool_or(column_name IN ('is_principal', 'diagnosis_rank')), false) AS has_position
    FROM input_columns
    WHERE table_name = 'diagnoses'
),
lbp AS (
    SELECT d.*
    FROM stg_diagnoses AS d
    WHERE d.recorded_at IS NOT NULL
      AND substr(d.diagnosis_code_norm, 1, 3) IN (
          SELECT substr(code_norm, 1, 3) FROM low_back_pain__ref_value_sets WHERE value_set = 'lbp_uncomplicated')
      AND EXISTS (
          SELECT 1 FROM low_back_pain__ref_value_sets AS vs
          WHERE vs.value_set = 'lbp_uncomplicated'
            AND substr(vs.code_norm, 1, 3) = substr(d.diagnosis_code_norm, 1, 3)
            AND ((vs.match = 'exact' AND vs.code_norm = d.diagnosis_code_norm)
                 OR (vs.match = 'prefix' AND starts_with(d.diagnosis_code_norm, vs.code_norm)))
            AND d.recorded_at >= vs.valid_from_at AND (vs.valid_until_at IS NULL OR d.recorded_at < vs.valid_until_at))
)
SELECT
    l.patient_id,
    l.recorded_at,
    CAST(timezone(prm.site_timezone, l.recorded_at) AS DATE) AS diagnosis_date,
    l.diagnosis_code,
    l.setting,
    l.is_principal,
    l.diagnosis_rank,
    NOT f.has_position OR coalesce(l.is_principal, l.diagnosis_rank = 1, false) AS is_principal_ok,
    NOT f.has_setting OR coalesce(l.setting IN ('outpatient', 'emergency', 'observation', 'telehealth'), false)
        AS is_setting_ok,
    f.has_position AND l.is_principal IS NULL AND l.diagnosis_rank IS NULL AS is_position_unknown,
    f.has_setting AND l.setting IS NULL AS is_setting_unknown
FROM lbp AS l
CROSS JOIN feed AS f
CROSS JOIN low_back_pain__parameters AS prm
