"""What a DuckDB connection holds: the one catalog query the checks share."""

from __future__ import annotations

# the gate's view of the patient ids the run's warehouse holds (gate.build_gate_db makes it; a diagnosis's patient
# found there is known, sql_checks.check_diagnoses_known_patient)
HELD_PATIENTS_VIEW = "held_patient_ids"
# the gate's view of the birth dates the warehouse's procedures give (gate.build_gate_db makes it; an order placed
# before its patient's birth is found with these too, sql_checks.check_orders_after_birth)
HELD_BIRTHS_VIEW = "held_birth_dates"
# the gate's view of the ids and times of the orders the warehouse holds (gate.build_gate_db makes it; the volume
# check compares a monthly extract's month with the months before it there, sql_checks.check_monthly_volume)
HELD_ORDERS_VIEW = "held_order_times"
# the times of the orders of the held files this delivery replaces whole (a file of the same months): the months
# they covered whole are judged too, for the merge leaves them the delivery's orders alone (check_monthly_volume)
HELD_REPLACED_ORDERS_VIEW = "held_replaced_order_times"


def relations(con) -> set[str]:
    """The names of the connection's tables and views (the gate's database: src_* views over the parsed files, the
    loader's incoming_rejects, the warehouse's held patients; a warehouse's own tables)."""
    return {
        name
        for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() UNION SELECT view_name FROM duckdb_views() WHERE NOT internal"
        ).fetchall()
    }
