-- The patients this audit names: every patient with an index procedure. The engine keys them
-- (csf_leak__int_patient_keys: the keyed pseudonym the outputs show).
SELECT DISTINCT patient_id FROM csf_leak__int_index_procedures
