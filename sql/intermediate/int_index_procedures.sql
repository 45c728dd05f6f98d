-- Lumbar-level procedures that can puncture the dura, with age and adulthood.
SELECT
    p.*,
    p.age_years >= prm.min_age_years AS is_adult
FROM stg_procedures AS p
CROSS JOIN audit_parameters AS prm
WHERE p.procedure_code IN (
    SELECT code_norm FROM stg_value_set_codes WHERE value_set = 'index_procedure'
)
