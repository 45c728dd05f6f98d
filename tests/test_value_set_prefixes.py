"""The CSF leak audit's indication flags match value-set prefixes of any length.

Prefix rows of three characters or more are joined on the code's first three characters (a hash join);
shorter ones keep a join of their own. Runs the audit's model on a few hand-made rows in memory."""

from __future__ import annotations

import duckdb

from pipeline.audits import discover, model_files


def _flags(codes_by_order: dict[str, str], value_sets: list[tuple[str, str, str]]) -> dict[str, tuple[bool, bool]]:
    audit = next(a for a in discover() if a.id == "csf_leak")
    sql = model_files(audit)["csf_leak__int_order_indication_flags"].read_text(encoding="utf-8")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TABLE csf_leak__int_patient_order_indications (order_id VARCHAR, patient_id VARCHAR, "
        "ordered_at TIMESTAMPTZ, indication_codes VARCHAR, indication_code VARCHAR)"
    )
    for order_id, code in codes_by_order.items():
        con.execute(
            "INSERT INTO csf_leak__int_patient_order_indications VALUES (?, 'p1', TIMESTAMPTZ '2025-03-01 10:00:00+00', ?, ?)",
            [order_id, code, code],
        )
    con.execute(
        "CREATE TABLE csf_leak__ref_value_sets (value_set VARCHAR, match VARCHAR, code_norm VARCHAR, "
        "valid_from_at TIMESTAMPTZ, valid_until_at TIMESTAMPTZ)"
    )
    for value_set, match, code in value_sets:
        con.execute(
            "INSERT INTO csf_leak__ref_value_sets VALUES (?, ?, ?, TIMESTAMPTZ '2020-01-01 00:00:00+00', NULL)",
            [value_set, match, code],
        )
    rows = con.execute(f"SELECT order_id, has_leak_indication, has_red_flag FROM ({sql})").fetchall()
    return {order_id: (leak, red) for order_id, leak, red in rows}


def test_prefixes_of_every_length_and_exact_codes_match():
    value_sets = [
        ("red_flag_indication", "prefix", "C7"),  # shorter than the three-character join key
        ("red_flag_indication", "prefix", "G00"),
        ("red_flag_indication", "prefix", "M462"),
        ("leak_diagnosis", "exact", "G9782"),
    ]
    codes = {"o1": "C787", "o2": "G001", "o3": "M4626", "o4": "G9782", "o5": "M4610", "o6": "C67"}
    assert _flags(codes, value_sets) == {
        "o1": (False, True),
        "o2": (False, True),
        "o3": (False, True),
        "o4": (True, False),
    }  # o5 (M461.. is not M462..) and o6 (C6.. is not C7..) match nothing
