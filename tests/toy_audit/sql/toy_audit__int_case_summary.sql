-- One row per case (every period): its index and its orders by verdict.
WITH counts AS (
    SELECT
        case_id,
        count(*) AS n_orders,
        count(*) FILTER (WHERE verdict IN ('appropriate', 'inappropriate', 'review')) AS n_evaluated,
        count(*) FILTER (WHERE verdict = 'inappropriate') AS n_inappropriate,
        count(*) FILTER (WHERE verdict = 'review') AS n_review,
        count(*) FILTER (WHERE verdict = 'not_evaluable') AS n_not_evaluable
    FROM toy_audit__int_audited_orders
    GROUP BY case_id
)
SELECT
    c.case_id,
    pk.patient_key,
    c.index_month,
    c.index_date,
    replace(strftime(timezone('UTC', c.index_at), '%Y-%m-%d %H:%M:%S'), ' ', 'T') || 'Z' AS index_at,
    n.n_orders,
    n.n_evaluated,
    n.n_inappropriate,
    n.n_review,
    n.n_not_evaluable
FROM toy_audit__int_cases AS c
JOIN toy_audit__int_patient_keys AS pk ON pk.patient_id = c.patient_id
JOIN counts AS n ON n.case_id = c.case_id
