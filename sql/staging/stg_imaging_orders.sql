-- Imaging orders with what the code map says about their code.
-- A code in CPT form that the map does not list is not neuro-imaging (the shipped map
-- lists every CPT code of the brief); any other unmapped code might be a leak work-up.
SELECT
    o.order_id,
    o.patient_id,
    o.ordered_at,
    CAST(timezone(prm.site_timezone, o.ordered_at) AS DATE) AS ordered_local_date,
    o.order_code,
    o.order_name,
    coalesce(o.ordering_department, '(not recorded)') AS ordering_department,
    o.ordering_provider_id,
    o.indication_codes,
    o.indication_text,
    o.status,
    o.priority,
    o.site,
    coalesce(o.status, '') = 'cancelled' AS is_cancelled,
    m.code IS NOT NULL AS is_mapped,
    m.study_type,
    m.modality,
    coalesce(m.regions, '') AS regions,
    m.contrast,
    (m.code IS NOT NULL AND m.study_type <> 'out_of_scope')
        OR (m.code IS NULL AND NOT regexp_matches(o.order_code, '^[0-9]{4}[0-9A-Z]$')) AS is_auditable
FROM src_imaging_orders AS o
CROSS JOIN audit_parameters AS prm
LEFT JOIN ref_imaging_codes AS m ON m.code = o.order_code
