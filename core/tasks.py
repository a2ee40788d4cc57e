"""What every Celery task of the apps shares."""

from django.db import InterfaceError, OperationalError

# The database going away (a restart, a failover) is retried with backoff: every task is
# safe to run again. The apps' own retries are bounded by their settings.
DATABASE_ERRORS = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": None,
}
