-- Each evidence event attaches to the patient's most recent index procedure at or before it
-- (a date-only diagnosis also attaches to an index on the same local date), and counts
-- when it falls within the evidence window.
WITH candidates AS (
    SELECT
        e.*,
        ip.procedure_id,
        ip.performed_at AS index_at,
        row_number() OVER (
            PARTITION BY e.patient_id, e.evidence_at, e.evidence_source, e.evidence_code
            ORDER BY ip.performed_at DESC, ip.procedure_id DESC
        ) AS recency
    FROM csf_leak__int_leak_evidence AS e
    JOIN csf_leak__int_index_procedures AS ip
      ON ip.patient_id = e.patient_id
     AND (ip.performed_at <= e.evidence_at
          OR (e.evidence_is_date
              AND ip.performed_local_date = CAST(timezone((SELECT site_timezone FROM csf_leak__parameters), e.evidence_at) AS DATE)))
)
SELECT
    c.patient_id, c.procedure_id, c.index_at, c.evidence_at, c.evidence_source, c.evidence_code,
    epoch(c.evidence_at) - epoch(c.index_at) <= prm.leak_evidence_days * 86400 AS is_within_window
FROM candidates AS c
CROSS JOIN csf_leak__parameters AS prm
WHERE c.recency = 1
