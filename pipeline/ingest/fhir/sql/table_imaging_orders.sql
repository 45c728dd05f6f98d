-- The imaging_orders rows of one ServiceRequest file as it is parsed (fhir_servicerequest: its
-- extract query over the file; orders.py streams the result to the loader): every column text as
-- the contract names it. The department: the sources [fhir] order_department names, in order
-- (python fills /*department*/). What the stream sets aside instead of loading (kept false): a
-- line rejected or left out, or an order whose Patient is not in the export; their rejects and
-- counts are queried from those rows alone. reason_condition_ids: the Conditions its reasonReference
-- names, whose codes the stream adds to indication_codes (reason_codes.sql).
SELECT
    key AS source_line,
    order_id,
    patient_id,
    ordered_at,
    order_code,
    /*department*/ NULL AS ordering_department,
    order_name,
    fhir_provider(provider_identifier, provider_practitioner_id, provider_reference) AS ordering_provider_id,
    fhir_indication_codes(reason_codes) AS indication_codes,
    indication_text,
    status,
    priority,
    problem IS NULL AND left_out IS NULL AND known_patient IS NOT NULL AS kept,
    problem,
    left_out,
    -- the reasonCode codes again only where reason_codes.sql needs them (a list per row costs the hand-over)
    CASE WHEN reason_condition_ids IS NOT NULL THEN reason_codes END AS reason_codes,
    reason_condition_ids
FROM fhir_in_context('fhir_servicerequest', 'fhir_encounter_places')
