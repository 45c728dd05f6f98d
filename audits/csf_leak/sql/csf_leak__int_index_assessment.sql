-- materialised: view
-- One row per index procedure: is it a case, and if not, why not.
-- A view: its two readers (int_cases, mart_index_procedures) join it once each for less than it
-- cost to store a third copy of the index procedures (570k rows at 10M) in the run's transaction.
WITH evidence AS (
    SELECT
        procedure_id,
        bool_or(is_within_window) AS has_evidence_in_window,
        count(*) AS n_evidence,
        min(evidence_at) FILTER (WHERE is_within_window) AS first_evidence_at,
        string_agg(DISTINCT evidence_source, '|' ORDER BY evidence_source)
            FILTER (WHERE is_within_window) AS evidence_sources
    FROM csf_leak__int_evidence_attached
    GROUP BY procedure_id
)
SELECT
    ip.*,
    coalesce(e.has_evidence_in_window, false) AS has_leak_evidence,
    coalesce(e.n_evidence, 0) > 0 AND NOT coalesce(e.has_evidence_in_window, false) AS has_late_evidence_only,
    e.first_evidence_at,
    e.evidence_sources,
    coalesce(ip.is_adult, false) AND coalesce(e.has_evidence_in_window, false) AS is_case
FROM csf_leak__int_index_procedures AS ip
LEFT JOIN evidence AS e ON e.procedure_id = ip.procedure_id
