-- One Practitioner per provider id an order or a procedure names.
SELECT row_number() OVER (ORDER BY id) AS n,
    w_object([w_member('resourceType', 'Practitioner'), w_member('id', id), w_raw_member('active', 'true')]) AS line
FROM (
    SELECT ordering_provider_id AS id FROM w_imaging_orders WHERE ordering_provider_id IS NOT NULL
    UNION SELECT provider_id FROM w_procedures WHERE provider_id IS NOT NULL
)
