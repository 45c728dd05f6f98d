-- A patient (rows_Patient.sql) as a Patient; a sex outside FHIR's gender codes is left out.
SELECT w_object([w_member('resourceType', 'Patient'), w_member('id', patient_id),
                 CASE WHEN sex IN ('male', 'female', 'other', 'unknown') THEN w_member('gender', sex) END,
                 w_member('birthDate', birth_date)]) AS line
FROM w_part
