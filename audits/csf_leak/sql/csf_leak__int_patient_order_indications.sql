-- materialised: view
-- One row per indication code listed on an order of an index patient, the code in dotless
-- upper-case form, with the order's patient, time and code list (what a leak indication
-- needs as evidence, so csf_leak__int_leak_evidence never re-reads the orders).
-- Split after the patient filter: splitting every order first costs 6x.
-- A code listed twice gives two rows: the only consumer asks "does any code match", and
-- de-duplicating 1.5M rows at 10M orders cost 0.8 s for nothing.
-- The split is a lateral join (CROSS JOIN unnest(...) AS s(code)), not unnest inside an expression:
-- Spark explodes only at the top of a select (docs/SQL_PORTABILITY.md).
SELECT order_id, patient_id, ordered_at, indication_codes, indication_code
FROM (
    SELECT
        o.order_id, o.patient_id, o.ordered_at, o.indication_codes,
        upper(replace(trim(s.code), '.', '')) AS indication_code
    FROM csf_leak__int_patient_orders AS o
    CROSS JOIN unnest(string_split(o.indication_codes, '|')) AS s(code)
    WHERE o.indication_codes IS NOT NULL
) AS split_codes
WHERE indication_code <> ''
