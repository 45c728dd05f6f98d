-- One Encounter per patient, ordering department and local day of the orders: the visit whose
-- location is the ordering department (ServiceRequest.encounter -> Encounter.location -> Location).
SELECT row_number() OVER (ORDER BY encounter_id) AS n,
    w_object([
        w_member('resourceType', 'Encounter'), w_member('id', encounter_id), w_member('status', 'finished'),
        w_raw_member('class', '{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB","display":"ambulatory"}'),
        w_raw_member('subject', w_reference('Patient', patient_id)),
        w_raw_member('location', '[' || w_object([w_raw_member('location', w_object([
            w_member('reference', 'Location/' || w_location_id(ordering_department)), w_member('display', ordering_department)]))]) || ']')
    ]) AS line
FROM (SELECT DISTINCT encounter_id, patient_id, ordering_department FROM w_order_encounters)
