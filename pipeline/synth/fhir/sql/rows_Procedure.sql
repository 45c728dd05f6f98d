-- One Procedure per procedure row, in the extract's order.
SELECT source_line AS n, * FROM w_procedures
