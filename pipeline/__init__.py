"""order-audit: audits of imaging orders against clinical guidelines (see README.md)."""

import os

# numpy's OpenBLAS starts a thread per core for every matrix product and solve. Ours are thousands of tiny
# batched systems (the feed's small-cell protection, report.disclosure): the threads only spin, and on a
# 2-core machine they took 4 of 18 CPU seconds of the render at case-dense 10M and slowed the rest of the
# render's threads without making the solves faster. Set before numpy loads; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
