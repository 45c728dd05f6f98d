-- Keyed pseudonym per patient with an index procedure: HMAC-SHA256(key, patient_id),
-- first 16 hex digits. The key pads live in a session-only temp table, never in the file.
SELECT
    ip.patient_id,
    'P' || left(sha256(k.opad || unhex(sha256(k.ipad || encode(ip.patient_id)))), 16) AS patient_key
FROM (SELECT DISTINCT patient_id FROM int_index_procedures) AS ip
CROSS JOIN pseudonym_key_pads AS k
