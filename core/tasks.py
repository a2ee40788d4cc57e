"""What every Celery task of the apps shares."""

from typing import TypedDict

from django.db import InterfaceError, OperationalError


class RetryOptions(TypedDict):
    """Celery task options, as `shared_task(**DATABASE_ERRORS)` takes them."""

    autoretry_for: tuple[type[Exception], ...]
    retry_backoff: int
    retry_backoff_max: int
    retry_jitter: bool
    max_retries: int | None


# The database going away (a restart, a failover) is retried with backoff: every task is
# safe to run again. The apps' own retries are bounded by their settings.
DATABASE_ERRORS: RetryOptions = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": None,
}
