-- Lumbar-level procedures that can puncture the dura, with age and adulthood. Adult: the whole age
-- range (stg_procedures; one value for a whole birth date or a recorded age) is min_age_years or more;
-- not adult: all of it is under; a range across the bound (born 2008, a procedure in 2026) is
-- unknown, as no age is. A code counts
-- while it is in force (valid_from .. valid_to of the value set, against the procedure's date).
-- The code's IN list comes first: a hash semi-join drops the other procedures before the EXISTS,
-- whose range test DuckDB runs as a grouping of every distinct (code, time) pair it is given.
SELECT
    p.*,
    CASE
        WHEN p.age_years_min >= prm.min_age_years THEN true
        WHEN p.age_years_max < prm.min_age_years THEN false
    END AS is_adult
FROM stg_procedures AS p
CROSS JOIN csf_leak__parameters AS prm
WHERE p.procedure_code IN (SELECT code_norm FROM csf_leak__ref_value_sets WHERE value_set = 'index_procedure')
  AND EXISTS (
    SELECT 1 FROM csf_leak__ref_value_sets AS vs
    WHERE vs.value_set = 'index_procedure' AND vs.code_norm = p.procedure_code
      AND p.performed_at >= vs.valid_from_at AND (vs.valid_until_at IS NULL OR p.performed_at < vs.valid_until_at)
)
