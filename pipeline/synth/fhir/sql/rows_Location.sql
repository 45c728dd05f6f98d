-- One Location per department named by an order or a procedure, by name.
SELECT name AS n, name FROM (
    SELECT ordering_department AS name FROM w_imaging_orders WHERE ordering_department IS NOT NULL
    UNION SELECT department FROM w_procedures WHERE department IS NOT NULL
)
