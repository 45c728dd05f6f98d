-- The patients rows: each Patient id once (its first line; supporting_rejects.sql rejects the later
-- ones and the lines with a problem, in the procedures load). A birth date that is no FHIR date (19700101, a
-- dateTime) is nulled (tables.py notes it); a partial one (1970, 1970-05) is kept, read as the days it spans.
SELECT
    key AS source_line,
    patient_id,
    fhir_birth_date(birth_date) AS birth_date,
    sex
FROM fhir_patient
WHERE problem IS NULL AND key NOT IN (SELECT source_line FROM fhir_supporting_rejects)
