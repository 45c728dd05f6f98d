-- One row per department that appears in the period's outputs, with what is attributed to it:
-- orders by the ordering department (order measures), cases by the department of the case's
-- first evaluated imaging order (case measures), and, as a second view only, cases by the
-- department of the index procedure. Each column sums to the hospital total over the rows
-- (cases without an evaluated imaging order have no first-imaging department: the report
-- shows them on a row of their own).
WITH orders AS (
    SELECT coalesce(ordering_department, '(not recorded)') AS department, verdict
    FROM csf_leak__mart_audited_orders
),
by_order AS (
    SELECT department,
           count(*) AS orders,
           count(*) FILTER (WHERE verdict <> 'excluded') AS orders_not_excluded,
           count(*) FILTER (WHERE verdict IN ('appropriate', 'inappropriate', 'review')) AS orders_evaluated,
           count(*) FILTER (WHERE verdict = 'inappropriate') AS orders_inappropriate,
           count(*) FILTER (WHERE verdict = 'review') AS orders_review
    FROM orders GROUP BY department
),
by_first_imaging AS (
    SELECT coalesce(first_imaging_department, '(not recorded)') AS department,
           count(*) AS cases_first_imaging,
           count(*) FILTER (WHERE n_inappropriate + n_review > 0) AS cases_flagged
    FROM csf_leak__mart_cases WHERE n_evaluated > 0 GROUP BY 1
),
by_procedure AS (
    SELECT coalesce(department, '(not recorded)') AS department, count(*) AS cases_procedure
    FROM csf_leak__mart_cases GROUP BY 1
),
departments AS (
    SELECT department FROM by_order
    UNION SELECT department FROM by_first_imaging
    UNION SELECT department FROM by_procedure
)
SELECT d.department,
       coalesce(o.orders, 0) AS orders,
       coalesce(o.orders_not_excluded, 0) AS orders_not_excluded,
       coalesce(o.orders_evaluated, 0) AS orders_evaluated,
       coalesce(o.orders_inappropriate, 0) AS orders_inappropriate,
       coalesce(o.orders_review, 0) AS orders_review,
       coalesce(f.cases_first_imaging, 0) AS cases_first_imaging,
       coalesce(f.cases_flagged, 0) AS cases_flagged,
       coalesce(p.cases_procedure, 0) AS cases_procedure
FROM departments AS d
LEFT JOIN by_order AS o USING (department)
LEFT JOIN by_first_imaging AS f USING (department)
LEFT JOIN by_procedure AS p USING (department)
