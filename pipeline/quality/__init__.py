"""The data-quality gate: generic checks on the inputs and outputs (Great Expectations on DuckDB, SQL checks)."""

# PySpark's warning about pandas 3, which Great Expectations' import of PySpark printed: silenced in
# pipeline/__init__.py, for every command that imports PySpark
