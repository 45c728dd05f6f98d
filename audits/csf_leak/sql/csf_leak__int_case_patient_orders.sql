-- materialised: view
-- Orders of case patients, with what the code map says about their code.
-- Filtered straight from staging by the few case patients: the semi-join against the cases
-- (a small hash table) costs half the one against every index patient, and the code-map
-- work then runs on ~30k orders instead of 10M (DuckDB evaluates a projection below a
-- semi-join for every row, so the filter must come first).
-- A code in CPT form that the map does not list is not neuro-imaging (the shipped map
-- lists every CPT code of the brief); any other unmapped code might be a leak work-up.
-- The run's code map is shared by every audit: this audit audits its own study types only
-- (a lumbar X-ray, mapped for another audit, is not neuro-imaging). A map row counts while in
-- force at the order's time (an order without a time: the code's row, whatever its dates).
WITH case_patient_orders AS (
    SELECT o.*
    FROM stg_imaging_orders AS o
    WHERE o.patient_id IN (SELECT patient_id FROM csf_leak__int_cases)
)
SELECT
    o.*,
    m.code IS NOT NULL AS is_mapped,
    m.study_type,
    m.modality,
    coalesce(m.regions, '') AS regions,
    m.contrast,
    (m.code IS NOT NULL AND m.study_type IN ('mri_spine', 'mri_brain', 'ct_head', 'ct_spine', 'ct_myelography',
                                              'myelography', 'myelography_injection', 'dsm', 'mr_myelography',
                                              'cisternography'))
        OR (m.code IS NULL AND NOT regexp_matches(o.order_code, '^[0-9]{4}[0-9A-Z]$')) AS is_auditable
FROM case_patient_orders AS o
LEFT JOIN ref_imaging_codes AS m
       ON m.code = o.order_code
      AND (o.ordered_at IS NULL OR (o.ordered_at >= m.valid_from_at AND (m.valid_until_at IS NULL OR o.ordered_at < m.valid_until_at)))
