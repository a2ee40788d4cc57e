"""Settings for the bench's what-if runs (`python -m bench.orders --tuning no_health_checks`):
the project's own settings plus the tunings named in BENCH_TUNING, so that a proposed change can
be measured on the real stack before it is made in the project. Used by no deployment.

- no_health_checks: CONN_HEALTH_CHECKS off (a "SELECT 1" before a reused connection's first
  query in each request or task).

(Connection reuse across tasks and task events off, measured here first, are now the project's
own settings: CELERY_DB_REUSE_MAX and CELERY_WORKER_SEND_TASK_EVENTS.)
"""

import os

from orderproj.settings import *  # noqa: F403
from orderproj.settings import DATABASES

TUNING = {t.strip() for t in os.environ.get("BENCH_TUNING", "").split(",") if t.strip()}
KNOWN = {"no_health_checks"}
if TUNING - KNOWN:
    raise ValueError(f"unknown BENCH_TUNING {sorted(TUNING - KNOWN)}; known: {sorted(KNOWN)}")

if "no_health_checks" in TUNING:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
