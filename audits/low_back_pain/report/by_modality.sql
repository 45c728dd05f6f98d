-- Audited orders of the period by modality of the code map (XR, CT, MR; unmapped codes apart): how
-- many, how many were judged (not excluded, evaluable), and how many of those were early imaging (n
-- of the early-imaging rate). On a department's page: the orders that department placed.
SELECT
    CASE coalesce(modality, '') WHEN 'XR' THEN 1 WHEN 'CT' THEN 2 WHEN 'MR' THEN 3 WHEN '' THEN 5 ELSE 4 END AS modality_order,
    coalesce(modality, '') AS modality,
    count(*) AS orders,
    count(*) FILTER (WHERE verdict = 'excluded') AS excluded,
    count(*) FILTER (WHERE verdict = 'not_evaluable') AS not_evaluable,
    count(*) FILTER (WHERE verdict IN ('appropriate', 'inappropriate')) AS evaluated,
    count(*) FILTER (WHERE verdict = 'inappropriate') AS early_imaging
FROM low_back_pain__mart_audited_orders
WHERE $department IS NULL OR ordering_department = $department
GROUP BY 1, 2
ORDER BY modality_order, modality
