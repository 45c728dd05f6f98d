-- One verdict per (case, order): the reason with the highest precedence decides; reasons
-- lists the fired reasons of that verdict in registry order, the rest go to secondary_reasons.
WITH winner AS (
    SELECT case_id, order_id, min(precedence) AS precedence
    FROM int_order_reasons
    GROUP BY case_id, order_id
)
SELECT
    w.case_id,
    w.order_id,
    v.verdict,
    string_agg(r.reason_code, '|' ORDER BY r.rule_order) FILTER (WHERE r.precedence = w.precedence) AS reasons,
    coalesce(string_agg(r.reason_code, '|' ORDER BY r.rule_order) FILTER (WHERE r.precedence <> w.precedence), '')
        AS secondary_reasons,
    string_agg(r.rule_id, '|' ORDER BY r.rule_order) FILTER (WHERE r.precedence = w.precedence) AS rule_ids,
    string_agg(rr.explanation, ' ' ORDER BY r.rule_order) FILTER (WHERE r.precedence = w.precedence) AS explanation,
    string_agg(DISTINCT rr.citation, ' || ' ORDER BY rr.citation) FILTER (WHERE r.precedence = w.precedence) AS citations
FROM winner AS w
JOIN int_order_reasons AS r ON r.case_id = w.case_id AND r.order_id = w.order_id
JOIN ref_rules AS rr ON rr.reason_code = r.reason_code
JOIN ref_verdicts AS v ON v.precedence = w.precedence
GROUP BY w.case_id, w.order_id, v.verdict
