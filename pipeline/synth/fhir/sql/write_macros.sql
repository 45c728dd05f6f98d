-- Helpers that write FHIR JSON text (order-audit synth --format fhir, the test deck). An element
-- whose value is NULL is left out: concat_ws skips NULL parts, and '"x":' || NULL is NULL.

-- A JSON object of the parts that are not NULL.
CREATE OR REPLACE MACRO w_object(parts) AS '{' || array_to_string(list_filter(parts, lambda p: p IS NOT NULL), ',') || '}';

-- "name":value, NULL when the value is.
CREATE OR REPLACE MACRO w_member(name, value) AS '"' || name || '":' || to_json(value);

-- A member whose value is already JSON text (an object or an array).
CREATE OR REPLACE MACRO w_raw_member(name, json_text) AS '"' || name || '":' || json_text;

-- A reference to a resource.
CREATE OR REPLACE MACRO w_reference(rtype, id) AS CASE WHEN id IS NOT NULL THEN w_object([w_member('reference', rtype || '/' || id)]) END;

-- A one-coding CodeableConcept.
CREATE OR REPLACE MACRO w_concept(system, code, display, text) AS
    CASE WHEN code IS NOT NULL THEN w_object([
        w_raw_member('coding', '[' || w_object([w_member('system', system), w_member('code', code), w_member('display', display)]) || ']'),
        w_member('text', text)
    ]) END;

-- The UTC offset of an instant in the site's zone, as FHIR writes it (+hh:mm / -hh:mm).
CREATE OR REPLACE MACRO w_offset(t) AS
    CASE WHEN epoch(timezone(getvariable('w_timezone'), t)) - epoch(t) < 0 THEN '-' ELSE '+' END
    || lpad(CAST(CAST(abs(epoch(timezone(getvariable('w_timezone'), t)) - epoch(t)) AS BIGINT) // 3600 AS VARCHAR), 2, '0') || ':'
    || lpad(CAST(CAST(abs(epoch(timezone(getvariable('w_timezone'), t)) - epoch(t)) AS BIGINT) % 3600 // 60 AS VARCHAR), 2, '0');

-- A typed instant as a FHIR dateTime: site wall-clock time with its offset (the same instant), a
-- bare date as the site's date, and a value the extract's reader could not read as it was given.
CREATE OR REPLACE MACRO w_datetime(t, is_date, raw) AS
    CASE
        WHEN t IS NULL THEN nullif(trim(raw), '')
        WHEN is_date THEN strftime(timezone(getvariable('w_timezone'), t), '%Y-%m-%d')
        WHEN microsecond(t) % 1000000 = 0 THEN strftime(timezone(getvariable('w_timezone'), t), '%Y-%m-%dT%H:%M:%S') || w_offset(t)
        ELSE strftime(timezone(getvariable('w_timezone'), t), '%Y-%m-%dT%H:%M:%S.%f') || w_offset(t)
    END;

-- The code system of a code by its form: CPT, LOINC, else the site's local system.
CREATE OR REPLACE MACRO w_code_system(code) AS
    CASE
        WHEN regexp_full_match(code, '[0-9]{4}[0-9A-Z]') THEN 'http://www.ama-assn.org/go/cpt'
        WHEN regexp_full_match(code, '[0-9]{1,7}-[0-9]') THEN 'http://loinc.org'
        ELSE getvariable('w_local_system')
    END;

-- Ids for the resources the extract only names (departments, encounters): stable across runs.
CREATE OR REPLACE MACRO w_location_id(name) AS 'loc-' || substr(md5(name), 1, 16);

-- The visit an order was placed in (ServiceRequest.encounter): one per patient, ordering department
-- and local day of the order; none without a patient or a department.
CREATE OR REPLACE MACRO w_order_encounter_id(patient_id, department, ordered_at) AS
    CASE WHEN patient_id IS NOT NULL AND department IS NOT NULL THEN 'enc-' || substr(md5(patient_id || '|' || department || '|'
        || coalesce(strftime(timezone(getvariable('w_timezone'), ordered_at), '%Y-%m-%d'), '')), 1, 20) END;

-- The encounter a diagnosis row with a setting or a position was recorded in (one per row).
CREATE OR REPLACE MACRO w_diagnosis_encounter_id(source_line, setting, is_principal, diagnosis_rank) AS
    CASE WHEN setting IS NOT NULL OR is_principal IS NOT NULL OR diagnosis_rank IS NOT NULL THEN 'enc-dx-' || source_line END;

-- Encounter.class (an R4 Coding, v3 ActCode) of a contract setting; a setting outside the contract's
-- words keeps its word in the site's own system (the reading gives it back, the gate sees it), none is UNK.
CREATE OR REPLACE MACRO w_encounter_class(setting) AS
    CASE setting
        WHEN 'outpatient' THEN '{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB","display":"ambulatory"}'
        WHEN 'emergency' THEN '{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER","display":"emergency"}'
        WHEN 'inpatient' THEN '{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP","display":"inpatient encounter"}'
        WHEN 'observation' THEN '{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OBSENC","display":"observation encounter"}'
        WHEN 'telehealth' THEN '{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"VR","display":"virtual"}'
        ELSE CASE WHEN setting IS NULL THEN '{"system":"http://terminology.hl7.org/CodeSystem/v3-NullFlavor","code":"UNK"}'
             ELSE w_object([w_member('system', 'http://hospital.example.org/fhir/CodeSystem/encounter-setting'), w_member('code', setting)]) END
    END;

-- Encounter.diagnosis.use of a diagnosis's is_principal: principal (ex-diagnosistype) or a comorbidity
-- (diagnosis-role CM: a secondary diagnosis); none when the extract does not say.
CREATE OR REPLACE MACRO w_diagnosis_use(is_principal) AS
    CASE is_principal
        WHEN true THEN '{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/ex-diagnosistype","code":"principal","display":"Principal Diagnosis"}]}'
        WHEN false THEN '{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/diagnosis-role","code":"CM","display":"Comorbidity diagnosis"}]}'
    END;

-- A birth date as Patient.birthDate writes it: a whole date YYYY-MM-DD; else the partial date the loader read as the
-- range earliest..latest (typed_frame.partial_date): a whole year (1 January .. 31 December) YYYY, a month YYYY-MM.
CREATE OR REPLACE MACRO w_birth_text(whole, earliest, latest) AS
    CASE
        WHEN whole IS NOT NULL THEN strftime(whole, '%Y-%m-%d')
        WHEN earliest IS NOT NULL AND month(earliest) = 1 AND month(latest) = 12 THEN strftime(earliest, '%Y')
        WHEN earliest IS NOT NULL THEN strftime(earliest, '%Y-%m')
    END;
