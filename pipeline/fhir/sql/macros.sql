-- Helpers the extract_* and table_* queries share (one connection, created once per export).

-- The id in a reference to a resource type: 'Patient/123', 'https://host/fhir/Patient/123',
-- 'Patient/123/_history/2' -> '123'; NULL when the reference is to another type.
CREATE OR REPLACE MACRO fhir_ref_id(ref, rtype) AS
    CASE
        WHEN starts_with(ref, rtype || '/') AND NOT contains(substr(ref, length(rtype) + 2), '/')
            THEN nullif(substr(ref, length(rtype) + 2), '')
        ELSE nullif(regexp_extract(ref, '(?:^|/)' || rtype || '/([^/]+)', 1), '')
    END;

-- The first coding with a code in the most preferred of `systems` (NULL when none is). Most
-- resources carry one coding: that case skips the ranking (a list sort per row costs ~0.5 s per 1M).
CREATE OR REPLACE MACRO fhir_pick(codings, systems) AS
    CASE
        WHEN len(codings) = 1 THEN
            CASE WHEN list_contains(systems, codings[1].system) AND nullif(trim(codings[1].code), '') IS NOT NULL
                 THEN codings[1] END
        ELSE list_sort(list_transform(
            list_filter(codings, lambda c: list_contains(systems, c.system) AND nullif(trim(c.code), '') IS NOT NULL),
            lambda c, i: {'rank': list_position(systems, c.system), 'i': i, 'code': c.code, 'display': c.display, 'system': c.system}
        ))[1]
    END;

-- The first coding that has a code, whatever its system.
CREATE OR REPLACE MACRO fhir_first_coded(codings) AS
    list_filter(codings, lambda c: nullif(trim(c.code), '') IS NOT NULL)[1];

-- The code an order or a procedure is read by: the preferred system's, else the first coded one
-- (an unmapped code is audited as such, never dropped).
CREATE OR REPLACE MACRO fhir_code(codings, systems) AS coalesce(fhir_pick(codings, systems), fhir_first_coded(codings));

-- A dateTime with a time must carry a UTC offset (FHIR R4 dateTime); a bare date needs none.
CREATE OR REPLACE MACRO fhir_no_offset(v) AS
    contains(v, 'T') AND NOT (ends_with(v, 'Z') OR (substr(v, -6, 1) IN ('+', '-') AND substr(v, -3, 1) = ':'));

-- One reject: its reason, the element it is about, the value worth showing (never a patient id).
CREATE OR REPLACE MACRO fhir_problem(reason, element, value) AS
    struct_pack(reason := reason, element := element, value := CAST(value AS VARCHAR));

-- The problems every resource can have, before its own: not JSON, not a resource, the wrong
-- type for its file, no id. NULL when there is none.
CREATE OR REPLACE MACRO fhir_common_problem(r, rtype) AS
    CASE
        WHEN r IS NULL THEN fhir_problem('line is not JSON', NULL, NULL)
        WHEN r.resourceType IS NULL THEN fhir_problem('not a FHIR resource (no resourceType)', 'resourceType', NULL)
        WHEN r.resourceType <> rtype THEN fhir_problem('a resource of another type in a ' || rtype || ' file', 'resourceType', r.resourceType)
        WHEN nullif(trim(r.id), '') IS NULL THEN fhir_problem('required element ' || rtype || '.id missing', rtype || '.id', NULL)
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
