"""The data-quality gate: generic checks on the inputs and outputs (Great Expectations on DuckDB, SQL checks)."""

import warnings

# Great Expectations imports PySpark whenever it is installed (the dev and spark extras), and PySpark
# 4.3 warns at import that it does not yet fully support pandas 3: noise on every run's stderr that
# says nothing about the user's data. Only that warning is silenced.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
