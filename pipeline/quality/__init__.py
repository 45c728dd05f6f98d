"""The data-quality gate: generic checks on the inputs and outputs (Great Expectations on DuckDB, SQL checks)."""
