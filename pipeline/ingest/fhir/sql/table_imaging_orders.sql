-- The imaging_orders rows: ServiceRequests neither rejected nor left out, whose Patient is in the
-- export, every column text as the contract names it. The department: the sources [fhir]
-- order_department names, in order (python fills /*department*/). fhir_reason_codes: the codes
-- of the Conditions each order's reasonReference names (a table of its own, see lookups.sql).
WITH joined AS (
    SELECT c.*, list_concat(c.reason_codes, rc.codes) AS all_reason_codes
    FROM fhir_in_context('fhir_servicerequest', 'fhir_encounter_places') AS c
    LEFT JOIN fhir_reason_codes AS rc ON rc.key = c.key
)
SELECT
    key AS source_line,
    order_id,
    patient_id,
    ordered_at,
    order_code,
    /*department*/ NULL AS ordering_department,
    order_name,
    coalesce(provider_identifier, fhir_ref_id(provider_reference, 'Practitioner'), provider_reference) AS ordering_provider_id,
    -- every code once, in the order given (reasonCode first, then the referenced Conditions)
    CASE len(all_reason_codes)
        WHEN 0 THEN NULL
        WHEN 1 THEN all_reason_codes[1]
        ELSE array_to_string(list_filter(all_reason_codes, lambda c, i: list_position(all_reason_codes, c) = i), '|')
    END AS indication_codes,
    indication_text,
    status,
    priority
FROM joined
WHERE problem IS NULL AND left_out IS NULL AND known_patient IS NOT NULL
