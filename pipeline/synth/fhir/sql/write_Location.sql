-- A department (rows_Location.sql) as a Location.
SELECT w_object([w_member('resourceType', 'Location'), w_member('id', w_location_id(name)), w_member('status', 'active'),
                 w_member('name', name)]) AS line
FROM w_part
