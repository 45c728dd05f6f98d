-- Helpers the extract_* and table_* queries share (one connection, created once per export).

-- The id in a reference to a resource type: 'Patient/123', 'https://host/fhir/Patient/123',
-- 'Patient/123/_history/2' -> '123'; NULL when the reference is to another type. The plain
-- relative form takes no regular expression (tens of millions of references). A 'urn:uuid:<uuid>' (a Bundle's
-- reference, as Bundle-to-NDJSON converters leave it) names the resource whose id is that uuid, of whatever type
-- (a uuid is unique): its id for any rtype, which resolves only where a resource of the expected type has it (a
-- subject to no Patient is a Patient not in the export; a requester: fhir_provider).
CREATE OR REPLACE MACRO fhir_ref_id(ref, rtype) AS
    CASE
        WHEN starts_with(ref, rtype || '/') AND NOT ref LIKE rtype || '/%/%' THEN nullif(substr(ref, length(rtype) + 2), '')
        WHEN lower(left(ref, 9)) = 'urn:uuid:' THEN nullif(trim(substr(ref, 10)), '')
        ELSE nullif(regexp_extract(ref, '(?:^|/)' || rtype || '/([^/]+)', 1), '')
    END;

-- A requester's or performer's reference as written (a PractitionerRole, an Organization, a Device: the provider
-- for lack of a Practitioner), unless it names a patient or a person of theirs: FHIR R4 allows a Patient and a
-- RelatedPerson there (a self-referral, a parent), and the outputs publish the provider as it is, beside the
-- patient's pseudonym (the hostile review found Patient/<id> published as the ordering provider). Any letter case,
-- a base URL, a _history version, a conditional reference (Patient?identifier=<system>|<MRN>: the hostile review
-- found the MRN published as the provider, 2026-12-05): all read as the patient's.
CREATE OR REPLACE MACRO fhir_provider_as_written(ref) AS
    CASE WHEN NOT regexp_matches(ref, '(?:^|/)\s*(?:patient|relatedperson)\s*(?:[/?#]|$)', 'i') THEN ref END;

-- The provider of an order (requester) or a procedure (performer): the Practitioner's identifier in
-- provider_identifier_system, else its id, else the reference as written (fhir_provider_as_written). A 'urn:uuid:'
-- reference names no type: it is a provider only when it resolves to a Practitioner of the export (its identifier,
-- else its id), never as written: it may be a Patient's or a RelatedPerson's uuid, and the outputs publish it.
CREATE OR REPLACE MACRO fhir_provider(identifier, practitioner_id, ref) AS
    CASE
        WHEN lower(left(ref, 9)) = 'urn:uuid:' THEN coalesce(identifier, practitioner_id)
        ELSE coalesce(identifier, fhir_ref_id(ref, 'Practitioner'), fhir_provider_as_written(ref))
    END;

-- Whether a value is missing or blank: NULL, '' or spaces alone (trim takes ' ' and Unicode's space separators,
-- which start at U+00A0). Asked of every resource's id: trim copies each value it is given (~0.4 CPU-s per
-- million ids), so only a value that starts with a character trim could take is trimmed.
CREATE OR REPLACE MACRO fhir_blank(v) AS v IS NULL OR ((v = '' OR ascii(v) = 32 OR ascii(v) >= 160) AND trim(v) = '');

-- The first coding with a code in the most preferred of `systems` (NULL when none is). Most
-- resources carry one coding: that case takes no lambda (a sort per row costs ~0.5 s per 1M).
-- Codes are trimmed by the loader, as an extract's are.
CREATE OR REPLACE MACRO fhir_pick(codings, systems) AS
    CASE
        WHEN len(codings) = 1 THEN
            CASE WHEN list_contains(systems, codings[1].system) AND codings[1].code <> '' THEN codings[1] END
        ELSE list_transform(list_sort(list_transform(
            list_filter(codings, lambda c: list_contains(systems, c.system) AND c.code <> ''),
            lambda c, i: {'rank': list_position(systems, c.system), 'i': i, 'coding': c}
        )), lambda x: x.coding)[1]
    END;

-- The first coding that has a code, whatever its system.
CREATE OR REPLACE MACRO fhir_first_coded(codings) AS
    CASE
        WHEN len(codings) = 1 THEN CASE WHEN codings[1].code <> '' THEN codings[1] END
        ELSE list_filter(codings, lambda c: c.code <> '')[1]
    END;

-- The code an order or a procedure is read by: the preferred system's, else the first coded one
-- (an unmapped code is audited as such, never dropped).
CREATE OR REPLACE MACRO fhir_code(codings, systems) AS coalesce(fhir_pick(codings, systems), fhir_first_coded(codings));

-- The coding an order (ServiceRequest) or a procedure is read by, over the site's systems for its type, and
-- the name shown beside it (code.text, else the coding's display). Read by a run's extract and by inspect's
-- code counts (codes_<Type>.sql), so inspect counts each resource under the code a run audits it by.
CREATE OR REPLACE MACRO fhir_order_coding(r) AS fhir_code(r.code.coding, getvariable('fhir_order_systems'));
CREATE OR REPLACE MACRO fhir_order_name(r, coding) AS coalesce(nullif(r.code.text, ''), coding.display);
CREATE OR REPLACE MACRO fhir_procedure_coding(r) AS fhir_code(r.code.coding, getvariable('fhir_procedure_systems'));
CREATE OR REPLACE MACRO fhir_procedure_name(r, coding) AS coalesce(nullif(trim(r.code.text), ''), coding.display);

-- The codes of a list of CodeableConcepts (reasonCode, category) in the given systems, as
-- 'system|code' when `with_system`: one concept with one coding (the usual) takes no lambda.
CREATE OR REPLACE MACRO fhir_concept_codes(concepts, systems) AS
    CASE
        WHEN len(concepts) = 1 AND len(concepts[1].coding) = 1 THEN
            CASE WHEN list_contains(systems, concepts[1].coding[1].system) AND concepts[1].coding[1].code <> ''
                 THEN [concepts[1].coding[1].code] ELSE [] END
        ELSE list_transform(
            list_filter(flatten(list_transform(concepts, lambda cc: cc.coding)),
                        lambda c: list_contains(systems, c.system) AND c.code <> ''),
            lambda c: c.code)
    END;

-- The codes in `systems` of the Conditions a resource contains (contained, kept as JSON) that its references
-- (a list of reference strings) name as '#id' (R4 References: a contained resource): an EHR's order that names its
-- indication by a contained Condition. Asked only of a resource with such a reference (the usual one has none):
-- its indication codes had been lost without a word (an excluded order audited as inappropriate).
-- A contained Condition refuted or entered in error is no indication, as an exported one is left out
-- (extract_Condition.sql): a refuted red flag had excluded the order.
CREATE OR REPLACE MACRO fhir_contained_codes(contained, refs, systems) AS
    flatten(list_transform(
        list_filter(
            json_transform(contained, '[{"resourceType": "VARCHAR", "id": "VARCHAR",
                "code": {"coding": [{"system": "VARCHAR", "code": "VARCHAR"}]},
                "verificationStatus": {"coding": [{"code": "VARCHAR"}]}, "clinicalStatus": {"coding": [{"code": "VARCHAR"}]}}]'),
            lambda c: c.resourceType = 'Condition' AND list_contains(refs, '#' || c.id)
                AND NOT coalesce(list_has_any(list_transform(c.verificationStatus.coding, lambda s: s.code),
                    ['refuted', 'entered-in-error']), false)
                AND NOT coalesce(list_contains(list_transform(c.clinicalStatus.coding, lambda s: s.code), 'entered-in-error'), false)),
        lambda c: fhir_concept_codes([c.code], systems)));

-- Every 'system|code' of a list of CodeableConcepts (a ServiceRequest's categories).
CREATE OR REPLACE MACRO fhir_concept_keys(concepts) AS
    CASE
        WHEN len(concepts) = 1 AND len(concepts[1].coding) = 1 THEN [concepts[1].coding[1].system || '|' || concepts[1].coding[1].code]
        ELSE list_transform(flatten(list_transform(concepts, lambda cc: cc.coding)), lambda c: c.system || '|' || c.code)
    END;

-- The texts of a list of CodeableConcepts, joined by '; ' (NULL when none has one).
CREATE OR REPLACE MACRO fhir_concept_texts(concepts) AS
    CASE
        WHEN len(concepts) = 1 THEN nullif(concepts[1].text, '')
        ELSE nullif(array_to_string(list_filter(list_transform(concepts, lambda cc: nullif(trim(cc.text), '')), lambda t: t IS NOT NULL), '; '), '')
    END;

-- A dateTime with a time must carry a UTC offset (FHIR R4 dateTime); a bare date needs none.
CREATE OR REPLACE MACRO fhir_no_offset(v) AS
    contains(v, 'T') AND NOT (ends_with(v, 'Z') OR (substr(v, -6, 1) IN ('+', '-') AND substr(v, -3, 1) = ':'));

-- One reject: its reason, the element it is about, the value worth showing (never a patient id).
CREATE OR REPLACE MACRO fhir_problem(reason, element, value) AS
    struct_pack(reason := reason, element := element, value := CAST(value AS VARCHAR));

-- A NUL (U+0000: a JSON string's \u0000) in a value the audit reads. JSON allows it, but no text
-- holds one: a CSV extract with a NUL byte is refused whole (load.py), and a C program, a database's
-- text type or a spreadsheet cuts the value at it. An export's line is rejected instead, naming the
-- element (the line is known); the value is not rewritten: a code must match its code map exactly,
-- and a name shown as [U+0000] would be a name the site never wrote. Other controls stay as delivered,
-- as in an extract (the report and workbook show them as [U+001B]: report/controls.py).
CREATE OR REPLACE MACRO fhir_nul(v) AS contains(v, chr(0));

-- The elements a ServiceRequest and a Procedure share (rtype: which; coding: the one picked; ext: the
-- department extension): the first that holds a NUL, else NULL. Each query adds its own elements after.
CREATE OR REPLACE MACRO fhir_nul_shared(rtype, r, coding, ext) AS
    CASE
        WHEN fhir_nul(r.id) THEN rtype || '.id'
        WHEN fhir_nul(r.subject.reference) THEN rtype || '.subject'
        WHEN fhir_nul(coding.code) THEN rtype || '.code.coding.code'
        WHEN fhir_nul(r.code.text) THEN rtype || '.code.text'
        WHEN fhir_nul(coding.display) THEN rtype || '.code.coding.display'
        WHEN fhir_nul(r.encounter.reference) THEN rtype || '.encounter'
        WHEN fhir_nul(ext.text) OR fhir_nul(ext.location_display) THEN rtype || '.extension'
    END;

CREATE OR REPLACE MACRO fhir_nul_problem(element) AS
    fhir_problem('a NUL character (\u0000) in ' || element || ': no text holds one (a damaged export)', element, NULL);

-- The first UTF-16 surrogate escape of a line that has no partner (a high \ud800 not followed by a low
-- \udc00-\udfff, or a low alone), lower-cased, else NULL. JSON's grammar lets a string hold one, but it is
-- no character of Unicode, so DuckDB's reader refuses the whole line, which read as "not JSON" and sent the
-- user looking for a syntax error. Escaped backslashes (\\ud800 is text) and whole pairs are taken out
-- first, left to right, so what is left of \uD8xx-\uDFxx stands alone.
CREATE OR REPLACE MACRO fhir_unpaired_surrogate(line) AS
    lower(nullif(regexp_extract(
        regexp_replace(line, '\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}', '', 'g'),
        '\\u[dD][89a-fA-F][0-9a-fA-F]{2}'), ''));

-- What a line holds that is JSON but no object: `null`, a list (a JSON file's array of resources,
-- written on one line), a string, a number, true or false.
CREATE OR REPLACE MACRO fhir_json_kind(line) AS
    CASE json_type(line)
        WHEN 'NULL' THEN 'JSON null'
        WHEN 'ARRAY' THEN 'a JSON list'
        WHEN 'VARCHAR' THEN 'a JSON string'
        WHEN 'BOOLEAN' THEN 'a JSON true or false'
        ELSE 'a JSON number'
    END;

-- The problem of a line read on the lines' way (its text at hand) that its text tells better than the
-- resource's query can, else NULL. The query reads a line that is not JSON and a line `null` alike (no
-- resource), and a list or a string as an object without a resourceType; the text tells them apart.
-- A line that is an object starts with `{` (after JSON's blanks): only the others are parsed again here.
CREATE OR REPLACE MACRO fhir_line_problem(line) AS
    CASE
        WHEN contains(line, '\u') AND fhir_unpaired_surrogate(line) IS NOT NULL THEN fhir_problem(
            'a string holds an unpaired UTF-16 surrogate ' || fhir_unpaired_surrogate(line)
                || ' (not valid Unicode): re-export the line', NULL, NULL)
        WHEN NOT json_valid(line) THEN fhir_problem('line is not JSON', NULL, NULL)
        WHEN NOT starts_with(ltrim(line, ' ' || chr(9) || chr(13)), '{') THEN fhir_problem(
            'line is ' || fhir_json_kind(line) || ', not a resource: an NDJSON line holds one resource object', NULL, NULL)
    END;

-- The problems every resource can have, before its own: no resource, not a resource, the wrong
-- type for its file, no id. NULL when there is none. A NULL r read whole is a line `null` (DuckDB's
-- reader stops at a line that is not JSON, and the lines' way reads that file); on the lines' way it is
-- either, and fhir_line_problem's reason, from the line's text, takes this one's place.
CREATE OR REPLACE MACRO fhir_common_problem(r, rtype) AS
    CASE
        WHEN r IS NULL THEN fhir_problem(
            'line is JSON null, not a resource: an NDJSON line holds one resource object', NULL, NULL)
        WHEN r.resourceType IS NULL THEN fhir_problem('not a FHIR resource (no resourceType)', 'resourceType', NULL)
        WHEN r.resourceType <> rtype THEN fhir_problem('a resource of another type in a ' || rtype || ' file', 'resourceType', r.resourceType)
        WHEN fhir_blank(r.id) THEN fhir_problem('required element ' || rtype || '.id missing', rtype || '.id', NULL)
    END;

-- A reference's display text, or a CodeableConcept's text / first display / first code.
CREATE OR REPLACE MACRO fhir_concept_text(cc) AS
    coalesce(nullif(trim(cc.text), ''), nullif(trim(cc.coding[1].display), ''), nullif(trim(cc.coding[1].code), ''));

-- The department an extension holds ([fhir] department_extension: its URL): a text, a code, a
-- CodeableConcept, or a reference to a Location. The extensions arrive as JSON text and are read
-- only when a site names one (most exports have extensions the audit does not need).
CREATE OR REPLACE MACRO fhir_extension_department(extensions) AS
    CASE WHEN getvariable('fhir_department_extension') IS NOT NULL THEN list_transform(
        list_filter(
            json_transform(extensions, '[{"url": "VARCHAR", "valueString": "VARCHAR", "valueCode": "VARCHAR",
                "valueCodeableConcept": {"text": "VARCHAR", "coding": [{"code": "VARCHAR", "display": "VARCHAR"}]},
                "valueReference": {"reference": "VARCHAR", "display": "VARCHAR"}}]'),
            lambda e: e.url = getvariable('fhir_department_extension')),
        lambda e: {
            'text': coalesce(nullif(trim(e.valueString), ''), nullif(trim(e.valueCode), ''), fhir_concept_text(e.valueCodeableConcept)),
            'location_id': fhir_ref_id(e.valueReference.reference, 'Location'),
            'location_display': e.valueReference.display
        })[1]
    END;

-- Encounter.class (R4: a Coding; v3 ActCode) as the contract's setting of a diagnosis: AMB outpatient,
-- EMER emergency, IMP / ACUTE / NONAC inpatient, OBSENC observation, VR virtual = telehealth; a
-- NullFlavor (UNK ...) none; another code as delivered (the gate names it; [values] can map it).
CREATE OR REPLACE MACRO fhir_setting(class_system, class_code) AS
    CASE
        WHEN nullif(trim(class_code), '') IS NULL OR class_system = 'http://terminology.hl7.org/CodeSystem/v3-NullFlavor' THEN NULL
        WHEN trim(class_code) = 'AMB' THEN 'outpatient'
        WHEN trim(class_code) = 'EMER' THEN 'emergency'
        WHEN trim(class_code) IN ('IMP', 'ACUTE', 'NONAC') THEN 'inpatient'
        WHEN trim(class_code) = 'OBSENC' THEN 'observation'
        WHEN trim(class_code) = 'VR' THEN 'telehealth'
        ELSE trim(class_code)
    END;

-- Encounter.diagnosis.use as is_principal: principal (ex-diagnosistype) true; CM (diagnosis-role:
-- a comorbidity, a secondary diagnosis) false; another use or none says nothing.
CREATE OR REPLACE MACRO fhir_diagnosis_principal(use_codes) AS
    CASE WHEN list_contains(use_codes, 'principal') THEN 'true' WHEN list_contains(use_codes, 'CM') THEN 'false' END;

-- An order's indication codes: every code once, in the order given (reasonCode first, then the
-- referenced Conditions); NULL when there is none.
CREATE OR REPLACE MACRO fhir_indication_codes(codes) AS
    CASE len(codes)
        WHEN 0 THEN NULL
        WHEN 1 THEN codes[1]
        ELSE array_to_string(list_filter(codes, lambda c, i: list_position(codes, c) = i), '|')
    END;

-- Why a resource is left out on purpose (counted, not rejected), or NULL: read by the extract of a run and by
-- inspect's code counts (codes_<Type>.sql), so both leave out the same resources.
CREATE OR REPLACE MACRO fhir_order_left_out(r) AS
    CASE
        WHEN r.status IN ('entered-in-error', 'draft') THEN 'ServiceRequest.status ' || r.status
        WHEN r.intent IN ('proposal', 'plan', 'option') THEN 'ServiceRequest.intent ' || r.intent || ' (not an order)'
        WHEN len(r.category) > 0 AND len(getvariable('fhir_imaging_categories')) > 0
             AND NOT list_has_any(fhir_concept_keys(r.category), getvariable('fhir_imaging_categories'))
            THEN 'ServiceRequest.category is not imaging'
    END;

-- A code of a required binding that is not one of its codes (FHIR codes are case-sensitive): a reject naming the
-- value. Only exact codes leave a resource out, so 'Not-Done' or 'Proposal' was read as done, or as an order.
CREATE OR REPLACE MACRO fhir_code_problem(element, code, codes) AS
    CASE WHEN code IS NOT NULL AND NOT list_contains(codes, code) THEN fhir_problem(
        element || ' is not one of its codes (' || array_to_string(codes, ', ') || '; case-sensitive)', element, code)
    END;

-- The first of a CodeableConcept's codes that is one of `codes` but for its case ('Refuted'), else NULL: such a
-- code would be read as none of them (a refuted diagnosis as confirmed). Codes of other systems (a local one
-- beside the HL7 coding) are not judged, only a code that differs from one of these in case alone.
CREATE OR REPLACE MACRO fhir_miscased(concept_codes, codes) AS
    CASE WHEN len(concept_codes) > 0
        THEN list_filter(concept_codes, lambda c: NOT list_contains(codes, c) AND list_contains(codes, lower(c)))[1]
    END;

CREATE OR REPLACE MACRO fhir_miscased_problem(element, concept_codes, codes) AS
    CASE WHEN fhir_miscased(concept_codes, codes) IS NOT NULL THEN fhir_problem(
        element || ' is one of its codes in another case (' || array_to_string(codes, ', ') || '; codes are case-sensitive)',
        element, fhir_miscased(concept_codes, codes))
    END;

CREATE OR REPLACE MACRO fhir_procedure_left_out(r) AS
    CASE WHEN r.status IN ('not-done', 'entered-in-error') THEN 'Procedure.status ' || r.status END;

-- Patient.birthDate as the loader reads it: a FHIR date, whole (YYYY-MM-DD) or partial (YYYY, YYYY-MM: R4 allows
-- them, and a de-identified export often keeps the year alone), its spaces trimmed as an extract's are; else NULL.
-- The loader reads a partial date as the range of days it spans (typed_frame.partial_date), which can still tell
-- an age band (born 1980: an adult in 2026). And why a value given is none of them (a note beside the nulled
-- value, tables.py): '19700101' or a dateTime is no FHIR date.
CREATE OR REPLACE MACRO fhir_birth_date(v) AS
    CASE WHEN regexp_full_match(trim(v), '[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?') THEN trim(v) END;

CREATE OR REPLACE MACRO fhir_birth_date_note(v) AS
    CASE WHEN nullif(trim(v), '') IS NOT NULL AND fhir_birth_date(v) IS NULL THEN
        'Patient.birthDate is not a FHIR date (YYYY-MM-DD, or a partial YYYY or YYYY-MM): no day to count the age from'
    END;

-- A Location at a level below a department (R4 location-physical-type): a bed (bd) or a room (ro). Such a
-- location of an Encounter stands for the ward or unit it is part of.
CREATE OR REPLACE MACRO fhir_below_department(physical_type) AS coalesce(physical_type IN ('bd', 'ro'), false);

-- Whether an Encounter.location's period covers a time (both as written): from its start, up to its end (a
-- move's end is the next one's start). A bare date on either side is compared as the dates written (a whole day,
-- no zone to read it in); a period with neither start nor end covers nothing (it says nothing of when).
CREATE OR REPLACE MACRO fhir_period_covers(start_at, end_at, event_at) AS
    event_at IS NOT NULL AND (start_at IS NOT NULL OR end_at IS NOT NULL)
    AND coalesce(start_at IS NULL OR CASE WHEN length(start_at) <= 10 OR length(event_at) <= 10
        THEN substr(start_at, 1, 10) <= substr(event_at, 1, 10) ELSE try_cast(start_at AS TIMESTAMPTZ) <= try_cast(event_at AS TIMESTAMPTZ) END, false)
    AND coalesce(end_at IS NULL OR CASE WHEN length(end_at) <= 10 OR length(event_at) <= 10
        THEN substr(event_at, 1, 10) <= substr(end_at, 1, 10) ELSE try_cast(event_at AS TIMESTAMPTZ) < try_cast(end_at AS TIMESTAMPTZ) END, false);

-- The department of an Encounter that lists several locations (lookups.sql fhir_encounter_moves: the places the
-- patient can have been at, and the department when no period covers the time), for an order or a procedure at
-- `event_at` (its time as written): the places whose period covers it, the first at a department's level (not a bed
-- or a room) else the first; else the fallback (the active place, else the first held). The time-free part is
-- computed once per encounter, so an order's row carries two small lambdas.
CREATE OR REPLACE MACRO fhir_encounter_department(places, fallback, event_at) AS
    CASE WHEN fallback IS NOT NULL OR places IS NOT NULL THEN coalesce(
        list_filter(places, lambda p: NOT p.below AND fhir_period_covers(p.start, p."end", event_at))[1].department,
        list_filter(places, lambda p: fhir_period_covers(p.start, p."end", event_at))[1].department,
        fallback) END;
