-- The low back pain floor: ONE hand-written DuckDB query (after two macros it uses) that reads the
-- extract files directly and computes the verdict counts per (case_index_month, ordering_department,
-- verdict) that low_back_pain__mart_audited_orders holds. Written from DOMAIN-LOW-BACK-PAIN.md and
-- audits/low_back_pain/DESIGN.md (sections 2-7), not from the audit's models.
--
-- Placeholders (string.Template, filled by benchmarks/common.py `floor_lbp_sql()`):
--   ${imaging_orders} ${diagnoses} ${procedures} ${patients}   relations with the canonical column
--                                          names (all VARCHAR; absent optional columns as NULL)
--   ${has_setting} ${has_position}         true when the diagnoses feed has the column(s): without
--                                          them every diagnosis may start an episode
--   ${value_sets}                          path of audits/low_back_pain/value_sets.csv
--   ${shipped_code_maps}                   a list of quoted paths: every audit's code_map.csv (one merged map)
--   ${local_code_map}                      a relation (the site map, or an empty one)
--   ${tz}                                  the site time zone
-- Run with SET TimeZone = 'UTC'. The audit counts site-local calendar days, never hours.
--
-- Parameters are the audit's defaults (audit.toml [parameters]): ages 18-75, 180 days of negative
-- history, early imaging on days 0-28, audited orders on days 0-42, red flags up to day 28, look-backs
-- of 90 days (trauma) or 12 calendar months, "any time before" for cancer, HIV, transplant and AS.
--
-- The floor's licence (all result-preserving on contract data):
--  * only patients with a low back pain diagnosis are parsed any further (nobody else can be a case);
--  * rows the pipeline's gate would set aside (duplicate ids, values outside the contract's vocabulary)
--    are not looked for: the generator writes none;
--  * a patient_age on the index date counts only when that day's procedures agree on it;
--  * code-map rows are not effective-dated (every shipped and example row starts before any data).
CREATE OR REPLACE TEMP MACRO lbp_instant(ts) AS (
    CASE
        WHEN ts IS NULL THEN NULL
        WHEN ts[-1] = 'Z' THEN timezone('UTC', try_strptime(ts, ['%Y-%m-%dT%H:%M:%SZ', '%Y-%m-%d %H:%M:%SZ',
            '%Y-%m-%dT%H:%M:%S.%fZ', '%Y-%m-%d %H:%M:%S.%fZ', '%Y-%m-%dT%H:%MZ', '%Y-%m-%d %H:%MZ']))
        WHEN length(ts) > 10 AND (ts[-6] IN ('+', '-') OR ts[-5] IN ('+', '-')) THEN
            try_strptime(ts, ['%Y-%m-%dT%H:%M:%S%z', '%Y-%m-%d %H:%M:%S%z', '%Y-%m-%dT%H:%M:%S.%f%z',
                              '%Y-%m-%d %H:%M:%S.%f%z', '%Y-%m-%dT%H:%M%z', '%Y-%m-%d %H:%M%z'])
        ELSE
            -- local wall-clock time (a bare date is local midnight); a time in a DST gap is no instant
            CASE
                WHEN timezone('${tz}', timezone('${tz}', try_strptime(ts, ['%Y-%m-%d', '%Y-%m-%d %H:%M:%S',
                        '%Y-%m-%dT%H:%M:%S', '%Y-%m-%d %H:%M:%S.%f', '%Y-%m-%dT%H:%M:%S.%f', '%Y-%m-%d %H:%M',
                        '%Y-%m-%dT%H:%M'])))
                     = try_strptime(ts, ['%Y-%m-%d', '%Y-%m-%d %H:%M:%S', '%Y-%m-%dT%H:%M:%S', '%Y-%m-%d %H:%M:%S.%f',
                        '%Y-%m-%dT%H:%M:%S.%f', '%Y-%m-%d %H:%M', '%Y-%m-%dT%H:%M'])
                THEN timezone('${tz}', try_strptime(ts, ['%Y-%m-%d', '%Y-%m-%d %H:%M:%S', '%Y-%m-%dT%H:%M:%S',
                        '%Y-%m-%d %H:%M:%S.%f', '%Y-%m-%dT%H:%M:%S.%f', '%Y-%m-%d %H:%M', '%Y-%m-%dT%H:%M']))
            END
    END
);
-- the site-local calendar date of a timestamp text (NULL: empty, unparseable or in a DST gap)
CREATE OR REPLACE TEMP MACRO lbp_local_date(ts) AS (CAST(timezone('${tz}', lbp_instant(ts)) AS DATE));
WITH
vs AS (
    SELECT value_set, replace(upper(trim(code)), '.', '') AS code_norm, lower(trim(match)) AS match,
           CAST(nullif(trim(valid_from), '') AS DATE) AS valid_from, CAST(nullif(trim(valid_to), '') AS DATE) AS valid_to
    FROM read_csv('${value_sets}', all_varchar = true, header = true)
),
local_map AS (
    SELECT upper(trim(code)) AS code, lower(trim(study_type)) AS study_type, upper(trim(coalesce(regions, ''))) AS regions
    FROM ${local_code_map}
),
code_map AS (  -- one merged map: the union of every audit's map, the site's map over it
    SELECT * FROM local_map
    UNION
    SELECT upper(trim(code)), lower(trim(study_type)), upper(trim(coalesce(regions, '')))
    FROM read_csv([${shipped_code_maps}], all_varchar = true, header = true, union_by_name = true)
    WHERE upper(trim(code)) NOT IN (SELECT code FROM local_map)
),
-- ------------------------------------------------------------------ low back pain diagnoses -> episodes
dx_txt AS (
    SELECT nullif(trim(patient_id), '') AS patient_id, replace(upper(trim(diagnosis_code)), '.', '') AS code,
           nullif(trim(recorded_at), '') AS ts, lower(nullif(trim(setting), '')) AS setting,
           lower(nullif(trim(is_principal), '')) AS is_principal, nullif(trim(diagnosis_rank), '') AS diagnosis_rank
    FROM ${diagnoses}
),
lbp_raw AS MATERIALIZED (  -- code in lbp_uncomplicated (the dates are checked once parsed)
    SELECT d.* FROM dx_txt AS d
    WHERE d.patient_id IS NOT NULL AND d.ts IS NOT NULL AND EXISTS (
        SELECT 1 FROM vs AS v WHERE v.value_set = 'lbp_uncomplicated'
          AND ((v.match = 'exact' AND d.code = v.code_norm) OR (v.match = 'prefix' AND starts_with(d.code, v.code_norm))))
),
lbp_dx AS MATERIALIZED (  -- DESIGN 4.1: the value-set row must be in force on the diagnosis's local date
    SELECT d.patient_id, d.day,
        CASE WHEN ${has_position} THEN coalesce(
                 CASE WHEN d.is_principal IN ('true', 't', 'yes', 'y', '1') THEN true
                      WHEN d.is_principal IN ('false', 'f', 'no', 'n', '0') THEN false END,
                 try_cast(d.diagnosis_rank AS INTEGER) = 1,
                 false)
             ELSE true END
        AND CASE WHEN ${has_setting} THEN coalesce(d.setting IN ('outpatient', 'emergency', 'observation', 'telehealth'), false)
                 ELSE true END AS index_eligible
    FROM (SELECT *, lbp_local_date(ts) AS day FROM lbp_raw) AS d
    WHERE d.day IS NOT NULL AND EXISTS (
        SELECT 1 FROM vs AS v WHERE v.value_set = 'lbp_uncomplicated'
          AND ((v.match = 'exact' AND d.code = v.code_norm) OR (v.match = 'prefix' AND starts_with(d.code, v.code_norm)))
          AND (v.valid_from IS NULL OR d.day >= v.valid_from) AND (v.valid_to IS NULL OR d.day <= v.valid_to))
),
lbp_patients AS MATERIALIZED (SELECT DISTINCT patient_id FROM lbp_dx),
new_episodes AS (  -- DESIGN 4.3-4.4: no low back pain diagnosis of any kind in the 180 days before
    SELECT DISTINCT c.patient_id, c.day AS index_date
    FROM lbp_dx AS c
    WHERE c.index_eligible AND NOT EXISTS (
        SELECT 1 FROM lbp_dx AS h WHERE h.patient_id = c.patient_id AND h.day >= c.day - 180 AND h.day < c.day)
),
-- ------------------------------------------------------------------ age at the index date (DESIGN 4.5)
pat_birth AS (
    SELECT nullif(trim(patient_id), '') AS patient_id,
           CAST(try_strptime(substr(trim(birth_date), 1, 10), '%Y-%m-%d') AS DATE) AS birth
    FROM ${patients}
    WHERE trim(patient_id) IN (SELECT patient_id FROM lbp_patients)
),
proc_lbp AS MATERIALIZED (
    SELECT nullif(trim(patient_id), '') AS patient_id,
           CAST(try_strptime(substr(trim(patient_birth_date), 1, 10), '%Y-%m-%d') AS DATE) AS birth,
           try_cast(nullif(trim(patient_age), '') AS DOUBLE) AS age, lbp_local_date(nullif(trim(performed_at), '')) AS day
    FROM ${procedures}
    WHERE trim(patient_id) IN (SELECT patient_id FROM lbp_patients)
),
proc_birth AS (  -- the procedures' birth date, when they all agree
    SELECT patient_id, min(birth) AS birth FROM proc_lbp WHERE birth IS NOT NULL
    GROUP BY patient_id HAVING count(DISTINCT birth) = 1
),
proc_age_on_day AS (
    SELECT patient_id, day, min(age) AS age FROM proc_lbp WHERE age IS NOT NULL AND day IS NOT NULL
    GROUP BY patient_id, day HAVING count(DISTINCT age) = 1
),
aged AS (
    SELECT e.patient_id, e.index_date,
        CASE
            WHEN b.birth IS NOT NULL THEN year(e.index_date) - year(b.birth)
                - CASE WHEN month(e.index_date) < month(b.birth)
                         OR (month(e.index_date) = month(b.birth) AND day(e.index_date) < day(b.birth))
                       THEN 1 ELSE 0 END
            ELSE pa.age
        END AS age
    FROM new_episodes AS e
    LEFT JOIN (SELECT patient_id, birth FROM pat_birth WHERE birth IS NOT NULL) AS pb ON pb.patient_id = e.patient_id
    LEFT JOIN proc_birth AS pr ON pr.patient_id = e.patient_id
    LEFT JOIN proc_age_on_day AS pa ON pa.patient_id = e.patient_id AND pa.day = e.index_date,
    LATERAL (SELECT coalesce(pb.birth, pr.birth) AS birth) AS b
),
cases AS MATERIALIZED (SELECT patient_id, index_date FROM aged WHERE age >= 18 AND age <= 75),
case_patients AS MATERIALIZED (SELECT DISTINCT patient_id FROM cases),
-- ------------------------------------------------------------------ orders of case patients
ord_txt AS (
    SELECT nullif(trim(order_id), '') AS order_id, nullif(trim(patient_id), '') AS patient_id,
           nullif(trim(ordered_at), '') AS ts, upper(nullif(trim(order_code), '')) AS order_code,
           coalesce(nullif(trim(ordering_department), ''), '(not recorded)') AS ordering_department,
           indication_codes, lower(trim(status)) AS status
    FROM ${imaging_orders}
    WHERE trim(patient_id) IN (SELECT patient_id FROM case_patients)
),
ord AS MATERIALIZED (  -- an unparseable order time sets the row aside; an empty one is kept (untimed)
    SELECT * FROM (SELECT *, lbp_local_date(ts) AS day FROM ord_txt
                   WHERE order_id IS NOT NULL AND patient_id IS NOT NULL AND order_code IS NOT NULL)
    WHERE ts IS NULL OR day IS NOT NULL
),
-- ------------------------------------------------------------------ red flags (DESIGN section 5)
red_flag_sets AS (SELECT *, substr(value_set, 10) AS grp FROM vs WHERE starts_with(value_set, 'red_flag_')),
indications AS (
    SELECT DISTINCT order_id, patient_id, day, replace(upper(trim(code)), '.', '') AS code
    FROM (SELECT order_id, patient_id, day, unnest(string_split(indication_codes, '|')) AS code
          FROM ord WHERE indication_codes IS NOT NULL)
    WHERE trim(code) <> ''
),
indication_flags AS MATERIALIZED (  -- an untimed order's codes match ignoring the dates (they exclude only it)
    SELECT i.order_id, i.patient_id, i.day, v.grp
    FROM indications AS i
    JOIN red_flag_sets AS v
      ON ((v.match = 'exact' AND i.code = v.code_norm) OR (v.match = 'prefix' AND starts_with(i.code, v.code_norm)))
     AND (i.day IS NULL OR ((v.valid_from IS NULL OR i.day >= v.valid_from) AND (v.valid_to IS NULL OR i.day <= v.valid_to)))
),
dx_case AS (
    SELECT d.patient_id, d.code, lbp_local_date(d.ts) AS day
    FROM dx_txt AS d WHERE d.patient_id IN (SELECT patient_id FROM case_patients)
),
red_flag_evidence AS (  -- diagnoses in any setting and position, and indications of any dated order
    SELECT d.patient_id, d.day, v.grp
    FROM dx_case AS d
    JOIN red_flag_sets AS v
      ON ((v.match = 'exact' AND d.code = v.code_norm) OR (v.match = 'prefix' AND starts_with(d.code, v.code_norm)))
     AND (v.valid_from IS NULL OR d.day >= v.valid_from) AND (v.valid_to IS NULL OR d.day <= v.valid_to)
    WHERE d.day IS NOT NULL
    UNION ALL
    SELECT patient_id, day, grp FROM indication_flags WHERE day IS NOT NULL
),
complicated AS (
    SELECT DISTINCT c.patient_id, c.index_date
    FROM cases AS c
    JOIN red_flag_evidence AS e ON e.patient_id = c.patient_id
    WHERE e.day <= c.index_date + 28
      AND e.day >= CASE
            WHEN e.grp = 'trauma' THEN c.index_date - 90
            WHEN e.grp IN ('iv_drug_use', 'neurological', 'spinal_infection', 'steroids', 'osteoporosis', 'palliative_care')
                THEN CAST(c.index_date - INTERVAL 12 MONTH AS DATE)
            ELSE DATE '0001-01-01'  -- cancer, hiv, organ_transplant, ankylosing_spondylitis: any time before
          END
),
-- ------------------------------------------------------------------ audited orders (DESIGN sections 3 and 6)
lumbar_or_unknown AS (
    SELECT o.*, m.code IS NOT NULL AS is_mapped
    FROM ord AS o LEFT JOIN code_map AS m ON m.code = o.order_code
    WHERE (m.study_type IN ('xr_spine', 'ct_spine', 'mri_spine') AND (contains(m.regions, 'L') OR contains(m.regions, 'S')))
       OR (m.code IS NULL AND NOT regexp_full_match(o.order_code, '[0-9]{4}[0-9A-Z]'))
),
assigned AS (  -- a dated order: the most recent episode with it on days 0-42; an untimed one: the most recent episode
    SELECT o.*, c.index_date
    FROM lumbar_or_unknown AS o
    JOIN cases AS c ON c.patient_id = o.patient_id
    WHERE o.day IS NULL OR (o.day >= c.index_date AND o.day <= c.index_date + 42)
    QUALIFY row_number() OVER (PARTITION BY o.order_id ORDER BY c.index_date DESC) = 1
),
verdicts AS (  -- DESIGN section 7: exclusions, then whether it can be judged, then the day
    SELECT strftime(a.index_date, '%Y-%m') AS case_index_month, a.ordering_department,
        strftime(a.index_date, '%Y-%m-%d') AS case_id, a.order_id,
        CASE
            WHEN coalesce(a.status, '') = 'cancelled'
              OR EXISTS (SELECT 1 FROM complicated AS x WHERE x.patient_id = a.patient_id AND x.index_date = a.index_date)
              OR EXISTS (SELECT 1 FROM indication_flags AS f WHERE f.order_id = a.order_id)
                THEN 'excluded'
            WHEN NOT a.is_mapped OR a.day IS NULL THEN 'not_evaluable'
            WHEN a.day - a.index_date <= 28 THEN 'inappropriate'
            ELSE 'appropriate'
        END AS verdict
    FROM assigned AS a
)
-- FINAL (benchmarks/common.py swaps this block for a per-order listing)
SELECT case_index_month, ordering_department, verdict, count(*) AS n
FROM verdicts
GROUP BY ALL
ORDER BY ALL
