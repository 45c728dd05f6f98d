-- Step 5: every new episode with the patient's age at the index date, in whole years (a year is added
-- on the birthday; born 29 February: on 1 March in other years, as stg_procedures counts). The birth
-- date comes from the patients table; else from the patient's procedure rows when every birth date
-- they give is the same (two different dates give none). Without a birth date, the age recorded on a
-- procedure on the index date itself (all agreeing): an age recorded on another date cannot give the
-- age at the index exactly. A partial birth date (1980, 1980-05) is the range of days it spans
-- (stg_patients; a procedure row's: the loader's patient_birth_earliest/latest), so the age is a range
-- age_years_min..age_years_max (one value for a whole date or a recorded age; age_years is that value).
-- The procedure rows' births agree when their ranges meet: the birth is in every one of them, so in
-- their overlap (two whole dates: the same date, as before; 1980 and 1980-05-03: 1980-05-03).
-- A case: a new episode whose whole age range is in [min_age_years, max_age_years]; a range that
-- crosses a bound is of unknown age (low_back_pain__mart_attrition counts it so).
WITH episodes AS (
    SELECT * FROM low_back_pain__int_candidate_dates WHERE is_new_episode
),
procedure_rows AS (
    SELECT
        p.patient_id,
        coalesce(p.patient_birth_date, p.patient_birth_earliest) AS birth_earliest,
        coalesce(p.patient_birth_date, p.patient_birth_latest) AS birth_latest,
        p.patient_age,
        CAST(timezone(prm.site_timezone, p.performed_at) AS DATE) AS performed_date
    FROM src_procedures AS p
    CROSS JOIN low_back_pain__parameters AS prm
    WHERE p.patient_id IN (SELECT patient_id FROM episodes)
      AND (p.patient_birth_date IS NOT NULL OR p.patient_birth_earliest IS NOT NULL OR p.patient_age IS NOT NULL)
),
procedure_birth AS (
    SELECT patient_id, max(birth_earliest) AS birth_earliest, min(birth_latest) AS birth_latest
    FROM procedure_rows
    WHERE birth_earliest IS NOT NULL
    GROUP BY patient_id
    HAVING max(birth_earliest) <= min(birth_latest)
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
    SELECT
        e.*,
        CASE WHEN pt.birth_earliest IS NOT NULL THEN pt.birth_earliest ELSE pb.birth_earliest END AS birth_earliest,
        CASE WHEN pt.birth_earliest IS NOT NULL THEN pt.birth_latest ELSE pb.birth_latest END AS birth_latest,
        sd.patient_age
    FROM episodes AS e
    LEFT JOIN stg_patients AS pt ON pt.patient_id = e.patient_id
    LEFT JOIN procedure_birth AS pb ON pb.patient_id = e.patient_id
    LEFT JOIN same_day_age AS sd ON sd.patient_id = e.patient_id AND sd.index_date = e.index_date
),
aged AS (
    SELECT
        b.*,
        CASE
            WHEN b.birth_latest IS NOT NULL THEN
                year(b.index_date) - year(b.birth_latest)
                - CASE
                    WHEN month(b.index_date) < month(b.birth_latest)
                      OR (month(b.index_date) = month(b.birth_latest) AND day(b.index_date) < day(b.birth_latest))
                    THEN 1 ELSE 0 END
            ELSE CAST(floor(b.patient_age) AS BIGINT)
        END AS age_years_min,
        CASE
            WHEN b.birth_earliest IS NOT NULL THEN
                year(b.index_date) - year(b.birth_earliest)
                - CASE
                    WHEN month(b.index_date) < month(b.birth_earliest)
                      OR (month(b.index_date) = month(b.birth_earliest) AND day(b.index_date) < day(b.birth_earliest))
                    THEN 1 ELSE 0 END
            ELSE CAST(floor(b.patient_age) AS BIGINT)
        END AS age_years_max
    FROM born AS b
)
SELECT
    a.patient_id,
    a.index_date,
    a.index_at,
    a.index_setting,
    a.index_diagnosis_code,
    CASE WHEN a.age_years_min = a.age_years_max THEN a.age_years_min END AS age_years,
    a.age_years_min,
    a.age_years_max,
    coalesce(a.age_years_min >= prm.min_age_years AND a.age_years_max <= prm.max_age_years, false) AS is_case
FROM aged AS a
CROSS JOIN low_back_pain__parameters AS prm
