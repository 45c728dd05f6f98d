-- materialised: view
-- Orders of case patients, with what the code map says about their code.
-- Filtered straight from staging by the few case patients: the semi-join against the cases
-- (a small hash table) costs half the one against every index patient, and the code-map
-- work then runs on ~30k orders instead of 10M (DuckDB evaluates a projection below a
-- semi-join for every row, so the filter must come first).
-- A code in CPT form that the map does not list is not neuro-imaging (the shipped map
-- lists every CPT code of the brief); any other unmapped code might be a leak work-up.
WITH case_patient_orders AS (
    SELECT o.*
    FROM stg_imaging_orders AS o
    WHERE o.patient_id IN (SELECT patient_id FROM int_cases)
)
SELECT
    o.*,
    m.code IS NOT NULL AS is_mapped,
    m.study_type,
    m.modality,
    coalesce(m.regions, '') AS regions,
    m.contrast,
    (m.code IS NOT NULL AND m.study_type <> 'out_of_scope')
        OR (m.code IS NULL AND NOT regexp_matches(o.order_code, '^[0-9]{4}[0-9A-Z]$')) AS is_auditable
FROM case_patient_orders AS o
LEFT JOIN ref_imaging_codes AS m ON m.code = o.order_code
