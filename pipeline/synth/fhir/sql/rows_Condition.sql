-- One Condition per diagnosis row, in the extract's order.
SELECT source_line AS n, * FROM w_diagnoses
