-- One Encounter per patient, ordering department and local day of the orders: the visit whose
-- location is the ordering department (ServiceRequest.encounter -> Encounter.location -> Location).
-- Then one per diagnosis row with a setting or a position (w_diagnosis_encounter_id): its class is
-- the setting, its diagnosis entry names the Condition with the row's rank and principal use.
SELECT row_number() OVER (ORDER BY kind, encounter_id, dx_line) AS n, line FROM (
    SELECT 0 AS kind, encounter_id, NULL AS dx_line,
        w_object([
            w_member('resourceType', 'Encounter'), w_member('id', encounter_id), w_member('status', 'finished'),
            w_raw_member('class', '{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB","display":"ambulatory"}'),
            w_raw_member('subject', w_reference('Patient', patient_id)),
            w_raw_member('location', '[' || w_object([w_raw_member('location', w_object([
                w_member('reference', 'Location/' || w_location_id(ordering_department)), w_member('display', ordering_department)]))]) || ']')
        ]) AS line
    FROM (SELECT DISTINCT encounter_id, patient_id, ordering_department FROM w_order_encounters)
    UNION ALL
    SELECT 1, NULL, source_line,
        w_object([
            w_member('resourceType', 'Encounter'),
            w_member('id', w_diagnosis_encounter_id(source_line, setting, is_principal, diagnosis_rank)),
            w_member('status', 'finished'),
            w_raw_member('class', w_encounter_class(setting)),
            w_raw_member('subject', w_reference('Patient', patient_id)),
            w_raw_member('diagnosis', '[' || w_object([
                w_raw_member('condition', w_reference('Condition', 'cond-' || source_line)),
                w_raw_member('use', w_diagnosis_use(is_principal)),
                CASE WHEN diagnosis_rank >= 1 THEN w_member('rank', diagnosis_rank) END
            ]) || ']')
        ])
    FROM w_diagnoses
    WHERE w_diagnosis_encounter_id(source_line, setting, is_principal, diagnosis_rank) IS NOT NULL
)
