-- The floor: ONE hand-written DuckDB query (after three macros it uses) that reads the extract files directly and
-- computes the verdict counts per (case_index_month, ordering_department, verdict) that the
-- pipeline's mart_audited_orders holds. It implements docs/DESIGN.md with no warehouse,
-- no staging tables and no Python in between: what the hardware needs for the core work.
--
-- Placeholders (string.Template, filled by benchmarks/run.py `floor_sql()`):
--   ${procedures} ${imaging_orders} ${diagnoses}   relations with the canonical column names
--                                                   (all VARCHAR; absent optional columns as NULL)
--   ${value_sets} ${imaging_code_map}               paths of the shipped seeds
--   ${local_code_map}                               a relation (the site map, or an empty one)
--   ${tz}                                           the site time zone
-- Run with SET TimeZone = 'UTC' (every instant is a TIMESTAMPTZ; days and months are
-- computed explicitly in the site zone).
--
-- Deliberate shortcuts (the floor's licence, all result-preserving on contract data):
--  * orders and diagnoses are parsed only for patients with an index procedure (the only
--    rows that can matter); the pipeline types every row.
--  * duplicate ids are not set aside (the pipeline rejects later duplicates; the generator
--    writes none).
--  * DST checks (ambiguous -> earlier instant, non-existent -> row rejected) only look at
--    local hours 00-03, where every US/EU transition falls.
-- Every table's times are read alike. A timestamp text's two readings (each CTE keeps both as columns):
-- a wall-clock time (a bare date is local midnight), else NULL ...
CREATE OR REPLACE TEMP MACRO floor_naive(ts) AS (
    CASE
        WHEN length(ts) = 10 THEN try_strptime(ts, '%Y-%m-%d')
        WHEN ts[-1] = 'Z' OR ts[-6] IN ('+', '-') OR ts[-5] IN ('+', '-') THEN NULL
        ELSE coalesce(try_strptime(ts, '%Y-%m-%d %H:%M:%S'),
                      try_strptime(ts, ['%Y-%m-%dT%H:%M:%S', '%Y-%m-%d %H:%M:%S.%f', '%Y-%m-%dT%H:%M:%S.%f',
                                        '%Y-%m-%d %H:%M', '%Y-%m-%dT%H:%M']))
    END
);
-- ... and an instant written with its offset (Z or +hh:mm), else NULL
CREATE OR REPLACE TEMP MACRO floor_with_offset(ts) AS (
    CASE
        WHEN length(ts) = 10 THEN NULL
        WHEN ts[-1] = 'Z' THEN timezone('UTC', coalesce(try_strptime(ts, '%Y-%m-%dT%H:%M:%SZ'),
            try_strptime(ts, ['%Y-%m-%d %H:%M:%SZ', '%Y-%m-%dT%H:%M:%S.%fZ', '%Y-%m-%d %H:%M:%S.%fZ',
                              '%Y-%m-%dT%H:%MZ', '%Y-%m-%d %H:%MZ'])))
        WHEN ts[-6] IN ('+', '-') OR ts[-5] IN ('+', '-') THEN
            coalesce(try_strptime(ts, '%Y-%m-%dT%H:%M:%S%z'),
                     try_strptime(ts, ['%Y-%m-%d %H:%M:%S%z', '%Y-%m-%dT%H:%M:%S.%f%z', '%Y-%m-%d %H:%M:%S.%f%z',
                                       '%Y-%m-%dT%H:%M%z', '%Y-%m-%d %H:%M%z']))
    END
);
-- A wall-clock time as the site's instant. Given the column, not floor_naive(ts): it is read five times here
CREATE OR REPLACE TEMP MACRO floor_site_instant(naive) AS (
    CASE
        WHEN naive IS NULL THEN NULL
        WHEN hour(naive) > 3 THEN timezone('${tz}', naive)
        WHEN timezone('${tz}', timezone('${tz}', naive) - INTERVAL 1 HOUR) = naive
            THEN timezone('${tz}', naive) - INTERVAL 1 HOUR          -- ambiguous: the earlier instant
        WHEN timezone('${tz}', timezone('${tz}', naive)) <> naive THEN NULL  -- DST gap: rejected
        ELSE timezone('${tz}', naive)
    END
);
WITH RECURSIVE
vs AS (
    SELECT value_set, replace(upper(trim(code)), '.', '') AS code_norm, lower(trim(match)) AS match
    FROM read_csv('${value_sets}', all_varchar = true, header = true)
),
local_map AS (
    SELECT upper(trim(code)) AS code, lower(trim(study_type)) AS study_type,
           upper(trim(coalesce(regions, ''))) AS regions, lower(trim(coalesce(contrast, ''))) AS contrast
    FROM ${local_code_map}
),
code_map AS (
    SELECT * FROM local_map
    UNION ALL
    SELECT upper(trim(code)), lower(trim(study_type)), upper(trim(coalesce(regions, ''))),
           lower(trim(coalesce(contrast, '')))
    FROM read_csv('${imaging_code_map}', all_varchar = true, header = true)
    WHERE upper(trim(code)) NOT IN (SELECT code FROM local_map)
),
-- ------------------------------------------------------------------ procedures
proc_txt AS (
    SELECT nullif(trim(procedure_id), '') AS procedure_id, nullif(trim(patient_id), '') AS patient_id,
           nullif(trim(performed_at), '') AS ts, upper(nullif(trim(procedure_code), '')) AS procedure_code,
           patient_birth_date, patient_age
    FROM ${procedures}
),
proc_parsed AS (
    SELECT *,
        floor_naive(ts) AS naive, floor_with_offset(ts) AS with_offset
    FROM proc_txt
    WHERE procedure_id IS NOT NULL AND patient_id IS NOT NULL AND procedure_code IS NOT NULL AND ts IS NOT NULL
),
proc AS (
    SELECT procedure_id, patient_id, procedure_code, patient_birth_date, patient_age,
        coalesce(with_offset, floor_site_instant(naive)) AS performed_at
    FROM proc_parsed
),
proc_ok AS MATERIALIZED (SELECT * FROM proc WHERE performed_at IS NOT NULL),
idx AS MATERIALIZED (
    SELECT p.procedure_id, p.patient_id, p.performed_at, l.local_date,
        CASE
            WHEN l.birth IS NOT NULL THEN year(l.local_date) - year(l.birth)
                - CASE WHEN month(l.local_date) < month(l.birth)
                         OR (month(l.local_date) = month(l.birth) AND day(l.local_date) < day(l.birth))
                       THEN 1 ELSE 0 END
            ELSE try_cast(nullif(trim(p.patient_age), '') AS DOUBLE)
        END >= 18 AS is_adult
    FROM proc_ok AS p,
         LATERAL (SELECT CAST(timezone('${tz}', p.performed_at) AS DATE) AS local_date,
                         CAST(try_strptime(substr(trim(p.patient_birth_date), 1, 10), '%Y-%m-%d') AS DATE) AS birth) AS l
    WHERE p.procedure_code IN (SELECT code_norm FROM vs WHERE value_set = 'index_procedure')
),
idx_patients AS MATERIALIZED (SELECT DISTINCT patient_id FROM idx),
-- ------------------------------------------------------------------ orders of index patients
ord_txt AS (
    SELECT nullif(trim(order_id), '') AS order_id, nullif(trim(patient_id), '') AS patient_id,
           nullif(trim(ordered_at), '') AS ts, upper(nullif(trim(order_code), '')) AS order_code,
           coalesce(nullif(trim(ordering_department), ''), '(not recorded)') AS ordering_department,
           indication_codes, lower(trim(status)) AS status
    FROM ${imaging_orders}
    WHERE trim(patient_id) IN (SELECT patient_id FROM idx_patients)
),
ord_parsed AS (
    SELECT *,
        floor_naive(ts) AS naive, floor_with_offset(ts) AS with_offset
    FROM ord_txt
    WHERE order_id IS NOT NULL AND patient_id IS NOT NULL AND order_code IS NOT NULL
),
ord AS (
    SELECT order_id, patient_id, order_code, ordering_department, indication_codes, status,
        coalesce(with_offset, floor_site_instant(naive)) AS ordered_at,
        ts IS NOT NULL AS has_ts
    FROM ord_parsed
),
ord_ok AS MATERIALIZED (  -- an unparseable (or DST-gap) order time rejects the row; an empty one is kept
    SELECT * EXCLUDE (has_ts) FROM ord WHERE NOT (has_ts AND ordered_at IS NULL)
),
indications AS (
    SELECT DISTINCT order_id, replace(upper(trim(code)), '.', '') AS code
    FROM (SELECT order_id, unnest(string_split(indication_codes, '|')) AS code
          FROM ord_ok WHERE indication_codes IS NOT NULL)
    WHERE trim(code) <> ''
),
ind_flags AS MATERIALIZED (
    SELECT i.order_id,
           bool_or(v.value_set = 'leak_diagnosis') AS has_leak,
           bool_or(v.value_set = 'red_flag_indication') AS has_red_flag
    FROM indications AS i
    JOIN vs AS v
      ON v.value_set IN ('leak_diagnosis', 'red_flag_indication')
     AND ((v.match = 'exact' AND i.code = v.code_norm) OR (v.match = 'prefix' AND starts_with(i.code, v.code_norm)))
    GROUP BY i.order_id
),
-- ------------------------------------------------------------------ leak evidence -> cases
dx_txt AS (
    SELECT nullif(trim(patient_id), '') AS patient_id, replace(upper(nullif(trim(diagnosis_code), '')), '.', '') AS code,
           nullif(trim(recorded_at), '') AS ts
    FROM ${diagnoses}
    WHERE trim(patient_id) IN (SELECT patient_id FROM idx_patients)
),
dx_leak AS (
    SELECT d.* FROM dx_txt AS d
    WHERE d.ts IS NOT NULL AND EXISTS (
        SELECT 1 FROM vs AS v WHERE v.value_set = 'leak_diagnosis'
          AND ((v.match = 'exact' AND d.code = v.code_norm) OR (v.match = 'prefix' AND starts_with(d.code, v.code_norm))))
),
dx_parsed AS (
    SELECT patient_id, length(ts) = 10 AS is_date,
        floor_naive(ts) AS naive, floor_with_offset(ts) AS with_offset
    FROM dx_leak
),
evidence AS (
    SELECT patient_id, is_date,
        coalesce(with_offset, floor_site_instant(naive)) AS evidence_at
    FROM dx_parsed
    UNION ALL
    SELECT o.patient_id, false, o.ordered_at
    FROM ord_ok AS o JOIN ind_flags AS f ON f.order_id = o.order_id
    WHERE f.has_leak AND o.ordered_at IS NOT NULL
    UNION ALL
    SELECT p.patient_id, false, p.performed_at
    FROM proc_ok AS p
    WHERE p.procedure_code IN (SELECT code_norm FROM vs WHERE value_set = 'blood_patch')
      AND p.patient_id IN (SELECT patient_id FROM idx_patients)
),
evidence_n AS (
    SELECT *, row_number() OVER () AS evidence_id FROM evidence WHERE evidence_at IS NOT NULL
),
attached AS (  -- the most recent index at or before the evidence (a bare date: also the same local date)
    SELECT e.evidence_id, e.evidence_at, i.procedure_id, i.performed_at,
           row_number() OVER (PARTITION BY e.evidence_id ORDER BY i.performed_at DESC, i.procedure_id DESC) AS recency
    FROM evidence_n AS e
    JOIN idx AS i
      ON i.patient_id = e.patient_id
     AND (i.performed_at <= e.evidence_at
          OR (e.is_date AND i.local_date = CAST(timezone('${tz}', e.evidence_at) AS DATE)))
),
cases AS MATERIALIZED (
    SELECT i.procedure_id AS case_id, i.patient_id, i.performed_at AS index_at,
           strftime(i.local_date, '%Y-%m') AS case_index_month
    FROM idx AS i
    WHERE i.is_adult
      AND i.procedure_id IN (SELECT procedure_id FROM attached
                             WHERE recency = 1 AND epoch(evidence_at) - epoch(performed_at) <= 14 * 86400)
),
-- ------------------------------------------------------------------ orders -> cases
aud AS (
    SELECT o.*, m.code IS NOT NULL AS is_mapped, m.study_type, coalesce(m.regions, '') AS regions, m.contrast,
           coalesce(f.has_red_flag, false) AS has_red_flag, coalesce(o.status, '') = 'cancelled' AS is_cancelled,
           CAST(timezone('${tz}', o.ordered_at) AS DATE) AS local_date
    FROM ord_ok AS o
    LEFT JOIN code_map AS m ON m.code = o.order_code
    LEFT JOIN ind_flags AS f ON f.order_id = o.order_id
    WHERE o.patient_id IN (SELECT patient_id FROM cases)
      AND ((m.code IS NOT NULL AND m.study_type <> 'out_of_scope')
           OR (m.code IS NULL AND NOT regexp_matches(o.order_code, '^[0-9]{4}[0-9A-Z]$$')))
),
timed AS (
    SELECT o.order_id, c.case_id,
           o.ordered_at >= c.index_at AND epoch(o.ordered_at) - epoch(c.index_at) <= 30 * 86400 AS in_window,
           row_number() OVER (
               PARTITION BY o.order_id
               ORDER BY (o.ordered_at >= c.index_at AND epoch(o.ordered_at) - epoch(c.index_at) <= 30 * 86400) DESC,
                        CASE WHEN o.ordered_at >= c.index_at AND epoch(o.ordered_at) - epoch(c.index_at) <= 30 * 86400
                             THEN -epoch(c.index_at) ELSE abs(epoch(o.ordered_at) - epoch(c.index_at)) END,
                        c.case_id) AS pick
    FROM aud AS o JOIN cases AS c ON c.patient_id = o.patient_id
    WHERE o.ordered_at IS NOT NULL
      AND epoch(o.ordered_at) - epoch(c.index_at) BETWEEN -30 * 86400 AND 60 * 86400
),
untimed AS (
    SELECT o.order_id, c.case_id, NULL::BOOLEAN AS in_window,
           row_number() OVER (PARTITION BY o.order_id ORDER BY c.index_at DESC, c.case_id DESC) AS pick
    FROM aud AS o JOIN cases AS c ON c.patient_id = o.patient_id
    WHERE o.ordered_at IS NULL
),
assigned AS MATERIALIZED (
    SELECT a.case_id, c.index_at, c.case_index_month, a.in_window, o.*,
           (epoch(o.ordered_at) - epoch(c.index_at)) / 3600.0 AS hours,
           coalesce(a.in_window, false) AND o.is_mapped AND NOT o.is_cancelled AND NOT o.has_red_flag
               AND o.ordered_at IS NOT NULL AS is_eligible
    FROM (SELECT case_id, order_id, in_window FROM timed WHERE pick = 1
          UNION ALL SELECT case_id, order_id, in_window FROM untimed WHERE pick = 1) AS a
    JOIN aud AS o ON o.order_id = a.order_id
    JOIN cases AS c ON c.case_id = a.case_id
),
-- ------------------------------------------------------------------ anchored 24 h episodes
numbered AS MATERIALIZED (
    SELECT case_id, order_id, ordered_at,
           row_number() OVER (PARTITION BY case_id ORDER BY ordered_at, order_id) AS rn
    FROM assigned WHERE is_eligible
),
walk AS (
    SELECT case_id, order_id, rn, ordered_at AS start_at, 1 AS episode
    FROM numbered WHERE rn = 1
    UNION ALL
    SELECT n.case_id, n.order_id, n.rn,
           CASE WHEN epoch(n.ordered_at) - epoch(w.start_at) > 24 * 3600 THEN n.ordered_at ELSE w.start_at END,
           CASE WHEN epoch(n.ordered_at) - epoch(w.start_at) > 24 * 3600 THEN w.episode + 1 ELSE w.episode END
    FROM walk AS w JOIN numbered AS n ON n.case_id = w.case_id AND n.rn = w.rn + 1
),
judged AS MATERIALIZED (SELECT a.*, w.episode FROM assigned AS a JOIN walk AS w ON w.order_id = a.order_id AND w.case_id = a.case_id),
coverage AS (
    SELECT case_id, episode,
        bool_or(study_type = 'mri_spine' AND contains(regions, 'C')) AND bool_or(study_type = 'mri_spine' AND contains(regions, 'T'))
            AND bool_or(study_type = 'mri_spine' AND contains(regions, 'L')) AS complete,
        bool_or(study_type = 'mri_spine' AND contains(regions, 'C') AND contrast IN ('without', 'without_and_with')) AS nc_c,
        bool_or(study_type = 'mri_spine' AND contains(regions, 'T') AND contrast IN ('without', 'without_and_with')) AS nc_t,
        bool_or(study_type = 'mri_spine' AND contains(regions, 'L') AND contrast IN ('without', 'without_and_with')) AS nc_l,
        bool_or(study_type = 'mri_spine' AND contains(regions, 'C') AND contrast IN ('with', 'without_and_with')) AS ct_c,
        bool_or(study_type = 'mri_spine' AND contains(regions, 'T') AND contrast IN ('with', 'without_and_with')) AS ct_t,
        bool_or(study_type = 'mri_spine' AND contains(regions, 'L') AND contrast IN ('with', 'without_and_with')) AS ct_l
    FROM judged GROUP BY case_id, episode
),
first_complete AS (
    SELECT case_id, min(episode) AS first_episode FROM coverage WHERE nc_c AND nc_t AND nc_l GROUP BY case_id
),
intrathecal_days AS (  -- case orders and non-index procedures that inject intrathecally
    SELECT case_id, local_date FROM judged
    WHERE study_type = 'myelography_injection'
       OR order_code IN (SELECT code_norm FROM vs WHERE value_set = 'intrathecal_injection')
    UNION
    SELECT c.case_id, CAST(timezone('${tz}', p.performed_at) AS DATE)
    FROM cases AS c JOIN proc_ok AS p ON p.patient_id = c.patient_id AND p.procedure_id <> c.case_id
    WHERE p.procedure_code IN (SELECT code_norm FROM vs WHERE value_set = 'intrathecal_injection')
),
ct_with_days AS (
    SELECT DISTINCT case_id, local_date FROM judged WHERE study_type = 'ct_spine' AND contrast = 'with'
),
facts AS (
    SELECT j.case_id, j.order_id,
        coalesce(f.first_episode IS NOT NULL AND j.episode > f.first_episode, false) AS subsequent,
        cv.complete, j.contrast, j.hours,
        CASE
            WHEN j.study_type = 'ct_spine' AND j.contrast = 'with' AND d.case_id IS NOT NULL THEN 'ct_myelography'
            WHEN j.study_type = 'myelography_injection' AND cw.case_id IS NOT NULL THEN 'ct_myelography'
            WHEN j.study_type = 'myelography_injection' THEN 'myelography'
            ELSE j.study_type
        END AS st,
        (NOT contains(j.regions, 'C') OR cv.nc_c) AND (NOT contains(j.regions, 'T') OR cv.nc_t)
            AND (NOT contains(j.regions, 'L') OR cv.nc_l) AS regions_nc,
        (NOT contains(j.regions, 'C') OR cv.ct_c) AND (NOT contains(j.regions, 'T') OR cv.ct_t)
            AND (NOT contains(j.regions, 'L') OR cv.ct_l) AS regions_ct
    FROM judged AS j
    JOIN coverage AS cv ON cv.case_id = j.case_id AND cv.episode = j.episode
    LEFT JOIN first_complete AS f ON f.case_id = j.case_id
    LEFT JOIN intrathecal_days AS d ON d.case_id = j.case_id AND d.local_date = j.local_date
    LEFT JOIN ct_with_days AS cw ON cw.case_id = j.case_id AND cw.local_date = j.local_date
),
clinical AS (
    SELECT case_id, order_id,
        CASE
            WHEN hours < 72
              OR (st = 'mri_spine' AND contrast = 'with' AND NOT regions_nc)
              OR (NOT subsequent AND (
                     (st = 'mri_spine' AND NOT complete)
                  OR st IN ('ct_head', 'ct_spine', 'ct_myelography', 'cisternography', 'mr_myelography')))
                THEN 'inappropriate'
            WHEN NOT subsequent AND (
                     (st = 'mri_spine' AND complete AND contrast = 'without' AND NOT regions_ct)
                  OR st IN ('dsm', 'myelography')
                  OR (st = 'mri_brain' AND NOT complete))
                THEN 'review'
            WHEN subsequent
              OR (st = 'mri_spine' AND complete AND regions_nc AND regions_ct)
              OR (st = 'mri_brain' AND complete)
                THEN 'appropriate'
        END AS verdict
    FROM facts
),
verdicts AS (
    SELECT a.case_index_month, a.ordering_department, a.case_id, a.order_id,
        CASE
            WHEN a.is_cancelled OR a.has_red_flag OR (a.ordered_at IS NOT NULL AND NOT coalesce(a.in_window, false))
                THEN 'excluded'
            WHEN NOT a.is_mapped OR a.ordered_at IS NULL THEN 'not_evaluable'
            ELSE cl.verdict
        END AS verdict
    FROM assigned AS a
    LEFT JOIN clinical AS cl ON cl.case_id = a.case_id AND cl.order_id = a.order_id
)
-- FINAL (benchmarks/common.py swaps this block for a per-order listing when hunting a difference)
SELECT case_index_month, ordering_department, verdict, count(*) AS n
FROM verdicts
GROUP BY ALL
ORDER BY ALL
