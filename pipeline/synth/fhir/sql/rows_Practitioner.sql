-- One Practitioner per provider id an order or a procedure names, by id.
SELECT id AS n, id FROM (
    SELECT ordering_provider_id AS id FROM w_imaging_orders WHERE ordering_provider_id IS NOT NULL
    UNION SELECT provider_id FROM w_procedures WHERE provider_id IS NOT NULL
)
