-- One ServiceRequest per order row, in the extract's order (rows its reader rejected too, as delivered,
-- so the FHIR reading rejects them again).
SELECT source_line AS n, * FROM w_imaging_orders
