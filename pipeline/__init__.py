"""order-audit: audits of imaging orders against clinical guidelines (see README.md)."""

import os
import warnings

# numpy's OpenBLAS starts a thread per core for every matrix product and solve. Ours are thousands of tiny
# batched systems (the feed's small-cell protection, report.disclosure): the threads only spin, and on a
# 2-core machine they took 4 of 18 CPU seconds of the render at case-dense 10M and slowed the rest of the
# render's threads without making the solves faster. Set before numpy loads; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# PySpark 4.3 warns at import that it does not yet fully support pandas 3: noise on stderr that says nothing
# about the user's data. Great Expectations imports PySpark whenever it is installed (the dev and spark
# extras), and `runs`/`diff --spark-state` import it without the gate: set here, where every command passes.
# Only that warning is silenced.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
