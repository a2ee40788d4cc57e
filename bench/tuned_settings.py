"""Settings for the bench's what-if runs (`python -m bench.orders --tuning reuse_db,...`): the
project's own settings plus the tunings named in BENCH_TUNING, so that a proposed change can be
measured on the real stack before it is made in the project. Used by no deployment.

- reuse_db: keep database connections across Celery tasks. Celery's Django fixup closes every
  connection before and after every task unless CELERY_DB_REUSE_MAX is set, so each task opens
  a new PostgreSQL session; here the fixup is told not to, and Django's own recycling
  (close_old_connections: CONN_MAX_AGE, broken connections) runs around each task instead.
- no_task_events: CELERY_WORKER_SEND_TASK_EVENTS off (three event messages per task).
- no_health_checks: CONN_HEALTH_CHECKS off (a "SELECT 1" before a reused connection's first
  query in each request or task).
"""

import os

from orderproj.settings import *  # noqa: F403
from orderproj.settings import DATABASES

TUNING = {t.strip() for t in os.environ.get("BENCH_TUNING", "").split(",") if t.strip()}
KNOWN = {"reuse_db", "no_task_events", "no_health_checks"}
if TUNING - KNOWN:
    raise ValueError(f"unknown BENCH_TUNING {sorted(TUNING - KNOWN)}; known: {sorted(KNOWN)}")

if "reuse_db" in TUNING:
    CELERY_DB_REUSE_MAX = 10**9

    from celery import signals
    from django.db import close_old_connections

    def _recycle_connections(**kwargs) -> None:
        close_old_connections()

    signals.task_prerun.connect(_recycle_connections, weak=False)
    signals.task_postrun.connect(_recycle_connections, weak=False)

if "no_task_events" in TUNING:
    CELERY_WORKER_SEND_TASK_EVENTS = False

if "no_health_checks" in TUNING:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
