-- The resources other tables look up, one row per id: a line rejected (its own problem, or an id
-- an earlier line had: supporting_rejects.sql, run first) is not looked up. An anti-join with
-- those few lines, not a group-by of ten million encounters by id.
CREATE OR REPLACE TEMP VIEW fhir_patients AS
    SELECT patient_id, birth_date, sex FROM fhir_patient
    WHERE problem IS NULL AND key NOT IN (SELECT source_line FROM fhir_supporting_rejects);
CREATE OR REPLACE TEMP VIEW fhir_locations AS
    SELECT location_id, name, physical_type, part_of FROM fhir_location
    WHERE problem IS NULL AND key NOT IN (SELECT source_line FROM fhir_supporting_rejects);
CREATE OR REPLACE TEMP VIEW fhir_practitioners AS
    SELECT practitioner_id, identifier FROM fhir_practitioner
    WHERE problem IS NULL AND key NOT IN (SELECT source_line FROM fhir_supporting_rejects);
CREATE OR REPLACE TEMP VIEW fhir_encounters AS
    SELECT encounter_id, location_id, location_display, service_type, setting FROM fhir_encounter
    WHERE problem IS NULL AND key NOT IN (SELECT source_line FROM fhir_supporting_rejects);
-- each Condition an encounter's diagnosis entries name, once (its first entry), with its rank and use
CREATE OR REPLACE TEMP VIEW fhir_encounter_diagnoses AS
    SELECT d.condition_id, arg_min(d.encounter_id, d.ord) AS encounter_id, arg_min(d.rank, d.ord) AS diagnosis_rank,
           arg_min(d.is_principal, d.ord) AS is_principal
    FROM (
        SELECT encounter_id, dx.condition_id, dx.rank, dx.is_principal, (key, pos) AS ord
        FROM (
            -- unnest in the select list: a LATERAL join's decorrelation hashed every encounter (10M) first
            SELECT encounter_id, key, unnest(diagnoses) AS dx, generate_subscripts(diagnoses, 1) AS pos
            FROM fhir_encounter
            WHERE diagnoses IS NOT NULL AND problem IS NULL AND key NOT IN (SELECT source_line FROM fhir_supporting_rejects)
        )
    ) AS d
    WHERE d.condition_id IS NOT NULL
    GROUP BY d.condition_id;
-- conditions a ServiceRequest.reasonReference may point to: those the diagnoses table keeps (not a
-- temp view: the order stream's second cursor looks codes up in it, reason_codes.sql)
CREATE OR REPLACE VIEW fhir_reason_conditions AS
    SELECT condition_id, arg_min(diagnosis_code, key) AS diagnosis_code FROM fhir_condition
    WHERE problem IS NULL AND left_out IS NULL AND condition_id IS NOT NULL GROUP BY condition_id;
-- The locations of an Encounter that lists several (a bed and its ward, the moves of a stay), each with the department
-- it stands for: its Location's name, or for a bed or a room (location-physical-type bd, ro: below a department) the
-- name of the nearest Location it is part of (Location.partOf, two levels up) that is not one; else its own name or
-- the reference's display. `places`: those the patient can have been at (not planned: not there yet; not reserved:
-- held empty), in order, for the pick by an order's time (macros.sql fhir_encounter_department); `fallback`: the
-- department when no period covers that time, which needs no time: the first active place (at a department's level
-- first), else the first place held, else the first planned or reserved one. Only these few encounters are unnested.
CREATE OR REPLACE TEMP VIEW fhir_encounter_moves AS
    SELECT
        encounter_id,
        list({'department': department, 'below': below, 'start': start, 'end': "end"} ORDER BY pos) FILTER (WHERE held)
            AS places,
        arg_min(department, (CASE WHEN status = 'active' THEN 0 WHEN held THEN 1 ELSE 2 END, below, pos)) AS fallback
    FROM (
        SELECT
            m.encounter_id, m.pos, m.status, m.below, m.start, m."end",
            coalesce(m.status NOT IN ('planned', 'reserved'), true) AS held,
            CASE
                WHEN m.below THEN coalesce(
                    CASE WHEN p1.location_id IS NOT NULL AND NOT fhir_below_department(p1.physical_type) THEN p1.name END,
                    CASE WHEN p2.location_id IS NOT NULL AND NOT fhir_below_department(p2.physical_type) THEN p2.name END,
                    m.name, m.display)
                ELSE coalesce(m.name, m.display)
            END AS department
        FROM (
            SELECT e.encounter_id, e.pos, e.loc.display, e.loc.status, e.loc.start, e.loc."end", l.name, l.part_of,
                   fhir_below_department(coalesce(e.loc.physical_type, l.physical_type)) AS below
            FROM (
                SELECT encounter_id, unnest(locations) AS loc, generate_subscripts(locations, 1) AS pos
                FROM fhir_encounter
                WHERE locations IS NOT NULL AND problem IS NULL AND key NOT IN (SELECT source_line FROM fhir_supporting_rejects)
            ) AS e
            LEFT JOIN fhir_locations AS l ON l.location_id = e.loc.location_id
        ) AS m
        LEFT JOIN fhir_locations AS p1 ON p1.location_id = m.part_of
        LEFT JOIN fhir_locations AS p2 ON p2.location_id = p1.part_of
    )
    GROUP BY encounter_id;
-- an encounter with its location's name
CREATE OR REPLACE TEMP VIEW fhir_encounter_places AS
    SELECT e.*, l.name AS location_name FROM fhir_encounters AS e LEFT JOIN fhir_locations AS l USING (location_id);

-- The encounters some Procedure names: the procedures' join hashes these (~1M at 10M orders), not
-- every encounter (10M, nearly all named by ServiceRequests only).
CREATE OR REPLACE TEMP VIEW fhir_procedure_encounter_places AS
    SELECT * FROM fhir_encounter_places WHERE encounter_id IN (SELECT encounter_id FROM fhir_procedure);

-- The encounters a Condition names (its own, or the one whose diagnosis names it): the diagnoses'
-- join hashes these (~1.2M at 10M orders), not every encounter (11M).
CREATE OR REPLACE TEMP VIEW fhir_condition_encounters AS
    SELECT * FROM fhir_encounters
    WHERE encounter_id IN (SELECT encounter_id FROM fhir_condition UNION ALL SELECT encounter_id FROM fhir_encounter_diagnoses);

-- An extracted ServiceRequest or Procedure (the view named) with what it refers to: its patient
-- (NULL: not in the export), its encounter (looked up in the view `encounters` names) and the
-- locations that can name its department, and the identifier of its practitioner.
CREATE OR REPLACE MACRO fhir_in_context(extracted, encounters) AS TABLE
    SELECT
        s.*,
        p.patient_id AS known_patient,
        p.birth_date,
        e.location_id AS encounter_location_id,
        e.location_display AS encounter_location_display,
        e.service_type AS encounter_service_type,
        e.location_name AS encounter_location_name,
        mv.places AS encounter_places,
        mv.fallback AS encounter_fallback,
        ol.name AS own_location_name,
        xl.name AS extension_location_name,
        pr.identifier AS provider_identifier,
        pr.practitioner_id AS provider_practitioner_id
    FROM query_table(extracted) AS s
    LEFT JOIN fhir_patients AS p ON p.patient_id = s.patient_id
    LEFT JOIN query_table(encounters) AS e ON e.encounter_id = s.encounter_id
    -- the places of an Encounter of several locations, joined apart: a list in the encounters' hash table (ten million
    -- at 10M orders) cost every encounter its copy (~6% of the parse at 100k orders); these are few, often none
    LEFT JOIN fhir_encounter_moves AS mv ON mv.encounter_id = s.encounter_id
    LEFT JOIN fhir_locations AS ol ON ol.location_id = s.location_id
    LEFT JOIN fhir_locations AS xl ON xl.location_id = s.extension_location_id
    LEFT JOIN fhir_practitioners AS pr ON pr.practitioner_id = fhir_ref_id(s.provider_reference, 'Practitioner');

-- What the FHIR reading rejects of a table's own resources (the view named; rtype: its type): a
-- problem of the line, or a reference to a Patient the export lacks.
CREATE OR REPLACE MACRO fhir_own_rejects(extracted, rtype) AS TABLE
    SELECT key AS source_line, problem.element AS column_name, problem.value AS value, problem.reason AS reason
    FROM query_table(extracted) WHERE problem IS NOT NULL
    UNION ALL
    SELECT key, rtype || '.subject', NULL, 'reference to a Patient that is not in the export'
    FROM query_table(extracted) AS s ANTI JOIN fhir_patients AS p ON p.patient_id = s.patient_id
    WHERE s.problem IS NULL AND s.left_out IS NULL;
