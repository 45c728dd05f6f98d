-- Step 5: every new episode with the patient's age at the index date, in whole years (a year is added
-- on the birthday; born 29 February: on 1 March in other years, as stg_procedures counts). The birth
-- date comes from the patients table; else from the patient's procedure rows when every birth date
-- they give is the same (two different dates give none). Without a birth date, the age recorded on a
-- procedure on the index date itself (all agreeing): an age recorded on another date cannot give the
-- age at the index exactly. A case: a new episode of known age in [min_age_years, max_age_years].
WITH episodes AS (
    SELECT * FROM low_back_pain__int_candidate_dates WHERE is_new_episode
),
procedure_rows AS (
    SELECT
        p.patient_id,
        p.patient_birth_date,
        p.patient_age,
        CAST(timezone(prm.site_timezone, p.performed_at) AS DATE) AS performed_date
    FROM src_procedures AS p
    CROSS JOIN low_back_pain__parameters AS prm
    WHERE p.patient_id IN (SELECT patient_id FROM episodes)
      AND (p.patient_birth_date IS NOT NULL OR p.patient_age IS NOT NULL)
),
procedure_birth AS (
    SELECT patient_id, min(patient_birth_date) AS birth_date
    FROM procedure_rows
    WHERE patient_birth_date IS NOT NULL
    GROUP BY patient_id
    HAVING min(patient_birth_date) = max(patient_birth_date)
),
same_day_age AS (
    SELECT e.patient_id, e.index_date, min(r.patient_age) AS patient_age
    FROM episodes AS e
    JOIN procedure_rows AS r ON r.patient_id = e.patient_id AND r.performed_date = e.index_date
    WHERE r.patient_age IS NOT NULL
    GROUP BY e.patient_id, e.index_date
    HAVING min(r.patient_age) = max(r.patient_age)
),
born AS (
    SELECT e.*, coalesce(pt.birth_date, pb.birth_date) AS birth_date, sd.patient_age
    FROM episodes AS e
    LEFT JOIN stg_patients AS pt ON pt.patient_id = e.patient_id
    LEFT JOIN procedure_birth AS pb ON pb.patient_id = e.patient_id
    LEFT JOIN same_day_age AS sd ON sd.patient_id = e.patient_id AND sd.index_date = e.index_date
),
aged AS (
    SELECT
        b.*,
        CASE
            WHEN b.birth_date IS NOT NULL THEN
                year(b.index_date) - year(b.birth_date)
                - CASE
                    WHEN month(b.index_date) < month(b.birth_date)
                      OR (month(b.index_date) = month(b.birth_date) AND day(b.index_date) < day(b.birth_date))
                    THEN 1 ELSE 0 END
            ELSE CAST(floor(b.patient_age) AS BIGINT)
        END AS age_years
    FROM born AS b
)
SELECT
    a.patient_id,
    a.index_date,
    a.index_at,
    a.index_setting,
    a.index_diagnosis_code,
    a.age_years,
    coalesce(a.age_years >= prm.min_age_years AND a.age_years <= prm.max_age_years, false) AS is_case
FROM aged AS a
CROSS JOIN low_back_pain__parameters AS prm
