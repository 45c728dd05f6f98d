-- One row per audited (case, order), one boolean per rule (rules.csv flag_column); every order fires one.
SELECT
    c.case_id,
    o.order_id,
    o.is_cancelled,
    NOT o.is_cancelled AND o.contrast IN ('with', 'without_and_with') AS has_contrast,
    NOT o.is_cancelled AND o.contrast = 'without' AS is_without_contrast
FROM toy_audit__int_orders AS o
JOIN toy_audit__int_cases AS c ON c.patient_id = o.patient_id
