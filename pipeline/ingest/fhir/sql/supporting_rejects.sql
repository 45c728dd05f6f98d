-- Rejected lines of the looked-up types: their own problem, or an id an earlier line already had
-- (the first one is used). Each type's rejects go with one table's load: Patient with procedures
-- (whose birth date it gives), Encounter, Location and Practitioner with imaging_orders.
WITH problems AS (
    SELECT 'procedures' AS table_name, key, problem FROM fhir_patient WHERE problem IS NOT NULL
    UNION ALL SELECT 'imaging_orders', key, problem FROM fhir_encounter WHERE problem IS NOT NULL
    UNION ALL SELECT 'imaging_orders', key, problem FROM fhir_location WHERE problem IS NOT NULL
    UNION ALL SELECT 'imaging_orders', key, problem FROM fhir_practitioner WHERE problem IS NOT NULL
),
-- not materialized: each use reads the parts again (cheaper than holding every id of the export)
ids AS NOT MATERIALIZED (
    SELECT 'procedures' AS table_name, 'Patient' AS rtype, key, patient_id AS id FROM fhir_patient WHERE problem IS NULL
    UNION ALL SELECT 'imaging_orders', 'Encounter', key, encounter_id FROM fhir_encounter WHERE problem IS NULL
    UNION ALL SELECT 'imaging_orders', 'Location', key, location_id FROM fhir_location WHERE problem IS NULL
    UNION ALL SELECT 'imaging_orders', 'Practitioner', key, practitioner_id FROM fhir_practitioner WHERE problem IS NULL
),
-- only the ids that repeat are ranked (a hash aggregate first, not a sort of every id)
repeated_ids AS (SELECT rtype, id FROM ids GROUP BY rtype, id HAVING count(*) > 1),
repeated AS (
    SELECT table_name, rtype, key, id FROM ids SEMI JOIN repeated_ids USING (rtype, id)
    QUALIFY row_number() OVER (PARTITION BY rtype, id ORDER BY key) > 1
)
SELECT table_name, key AS source_line, problem.element AS column_name, problem.value AS value, problem.reason AS reason
FROM problems
UNION ALL
-- (not worded 'duplicate ...': the gate counts those as the table's own duplicate ids)
SELECT table_name, key, rtype || '.id', NULL, rtype || '.id repeats an earlier line''s: the first line with this id is used'
FROM repeated
