-- A procedure row (rows_Procedure.sql) as a Procedure; its department as Procedure.location.
SELECT
    w_object([
        w_member('resourceType', 'Procedure'),
        w_member('id', procedure_id),
        w_member('status', 'completed'),
        w_raw_member('code', w_concept(w_code_system(procedure_code), procedure_code, procedure_name, procedure_name)),
        w_raw_member('subject', w_reference('Patient', patient_id)),
        w_member('performedDateTime', w_datetime(performed_at, performed_at_is_date, _raw_performed_at)),
        CASE WHEN provider_id IS NOT NULL
             THEN w_raw_member('performer', '[' || w_object([w_raw_member('actor', w_reference('Practitioner', provider_id))]) || ']') END,
        CASE WHEN department IS NOT NULL THEN w_raw_member('location', w_object([
            w_member('reference', 'Location/' || w_location_id(department)), w_member('display', department)])) END
    ]) AS line
FROM w_part
