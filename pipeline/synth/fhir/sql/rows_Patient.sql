-- One Patient per patient id of any table. The birth date: the patients table's (the audits read it
-- first), else the patient's first procedure's; an extract that gives an age instead (FHIR has no age)
-- gets the date half a year past that many years before the procedure's local date, the same whole
-- years at the procedure. FHIR holds one birth date a patient: procedure rows that disagree lose theirs.
-- As FHIR writes it (birth_date, text): YYYY-MM-DD, or a partial date as delivered (the loader's range of days
-- back to 1980 or 1980-05).
WITH ids AS (
    SELECT patient_id FROM w_procedures WHERE patient_id IS NOT NULL
    UNION SELECT patient_id FROM w_imaging_orders WHERE patient_id IS NOT NULL
    UNION SELECT patient_id FROM w_diagnoses WHERE patient_id IS NOT NULL
    UNION SELECT patient_id FROM w_patients WHERE patient_id IS NOT NULL
),
listed AS (  -- the patients table's row of each patient (its first)
    SELECT patient_id, arg_min(w_birth_text(birth_date, birth_earliest, birth_latest), source_line) AS birth_date,
           arg_min(sex, source_line) AS sex
    FROM w_patients WHERE patient_id IS NOT NULL GROUP BY patient_id
),
births AS (
    SELECT patient_id, arg_min(
        coalesce(w_birth_text(patient_birth_date, patient_birth_earliest, patient_birth_latest),
            strftime(CAST(timezone(getvariable('w_timezone'), performed_at) AS DATE)
                - to_years(CAST(floor(patient_age) AS INTEGER)) - INTERVAL 182 DAY, '%Y-%m-%d')),
        source_line) AS birth_date
    FROM w_procedures
    WHERE patient_id IS NOT NULL AND (patient_birth_date IS NOT NULL OR patient_birth_earliest IS NOT NULL
                                      OR (patient_age IS NOT NULL AND performed_at IS NOT NULL))
    GROUP BY patient_id
)
SELECT ids.patient_id AS n, ids.patient_id, pt.sex, coalesce(pt.birth_date, b.birth_date) AS birth_date
FROM ids LEFT JOIN births AS b USING (patient_id) LEFT JOIN listed AS pt USING (patient_id)
