-- An encounter (rows_Encounter.sql) as an Encounter. A visit: ambulatory, at the ordering department's
-- Location. A diagnosis row's: its class is the setting, its diagnosis entry names the Condition with
-- the row's rank and principal use.
SELECT CASE WHEN source_line IS NULL THEN
        w_object([
            w_member('resourceType', 'Encounter'), w_member('id', encounter_id), w_member('status', 'finished'),
            w_raw_member('class', '{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB","display":"ambulatory"}'),
            w_raw_member('subject', w_reference('Patient', patient_id)),
            w_raw_member('location', '[' || w_object([w_raw_member('location', w_object([
                w_member('reference', 'Location/' || w_location_id(ordering_department)), w_member('display', ordering_department)]))]) || ']')
        ])
    ELSE
        w_object([
            w_member('resourceType', 'Encounter'),
            w_member('id', encounter_id),
            w_member('status', 'finished'),
            w_raw_member('class', w_encounter_class(setting)),
            w_raw_member('subject', w_reference('Patient', patient_id)),
            w_raw_member('diagnosis', '[' || w_object([
                w_raw_member('condition', w_reference('Condition', 'cond-' || source_line)),
                w_raw_member('use', w_diagnosis_use(is_principal)),
                CASE WHEN diagnosis_rank >= 1 THEN w_member('rank', diagnosis_rank) END
            ]) || ']')
        ])
    END AS line
FROM w_part
