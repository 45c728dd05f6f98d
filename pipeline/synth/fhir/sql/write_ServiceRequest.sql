-- An order row (rows_ServiceRequest.sql) as a ServiceRequest; its encounter the visit of its patient,
-- department and local day (rows_Encounter.sql).
SELECT
    w_object([
        w_member('resourceType', 'ServiceRequest'),
        w_member('id', o.order_id),
        w_member('status', CASE coalesce(o.status, '')
            WHEN 'cancelled' THEN 'revoked' WHEN 'completed' THEN 'completed' WHEN 'ordered' THEN 'active'
            WHEN 'scheduled' THEN 'active' WHEN '' THEN 'unknown' ELSE o.status END),
        w_member('intent', 'order'),
        w_raw_member('category', '[{"coding":[{"system":"http://snomed.info/sct","code":"363679005","display":"Imaging"}]}]'),
        CASE WHEN o.priority IN ('routine', 'urgent', 'asap', 'stat') THEN w_member('priority', o.priority) END,
        w_raw_member('code', w_concept(w_code_system(o.order_code), o.order_code, o.order_name, o.order_name)),
        w_raw_member('subject', w_reference('Patient', o.patient_id)),
        w_raw_member('encounter', w_reference('Encounter', w_order_encounter_id(o.patient_id, o.ordering_department, o.ordered_at))),
        w_member('authoredOn', w_datetime(o.ordered_at, o.ordered_at_is_date, o._raw_ordered_at)),
        w_raw_member('requester', w_reference('Practitioner', o.ordering_provider_id)),
        -- one reasonCode per ICD-10-CM indication code; the order's indication text on the first
        CASE WHEN len(o.codes) > 0 THEN w_raw_member('reasonCode', '[' || array_to_string(list_transform(o.codes, lambda c, i: w_object([
                w_raw_member('coding', '[' || w_object([w_member('system', 'http://hl7.org/fhir/sid/icd-10-cm'), w_member('code', c)]) || ']'),
                CASE WHEN i = 1 THEN w_member('text', o.indication_text) END])), ',') || ']')
             WHEN o.indication_text IS NOT NULL THEN w_raw_member('reasonCode', '[' || w_object([w_member('text', o.indication_text)]) || ']')
        END
    ]) AS line
FROM (
    SELECT *, list_filter(list_transform(string_split(coalesce(indication_codes, ''), '|'), lambda c: trim(c)), lambda c: c <> '') AS codes
    FROM w_part
) AS o
