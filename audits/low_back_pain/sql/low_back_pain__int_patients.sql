-- The patients this audit names: every patient with a case. The engine keys them
-- (low_back_pain__int_patient_keys: the keyed pseudonym the outputs show).
SELECT DISTINCT patient_id FROM low_back_pain__int_episodes WHERE is_case
