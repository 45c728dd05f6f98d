-- A provider id (rows_Practitioner.sql) as a Practitioner.
SELECT w_object([w_member('resourceType', 'Practitioner'), w_member('id', id), w_raw_member('active', 'true')]) AS line
FROM w_part
