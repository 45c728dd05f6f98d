-- One Location per department named by an order or a procedure.
SELECT row_number() OVER (ORDER BY name) AS n,
    w_object([w_member('resourceType', 'Location'), w_member('id', w_location_id(name)), w_member('status', 'active'),
              w_member('name', name)]) AS line
FROM (
    SELECT ordering_department AS name FROM w_imaging_orders WHERE ordering_department IS NOT NULL
    UNION SELECT department FROM w_procedures WHERE department IS NOT NULL
)
