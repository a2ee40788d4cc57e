"""Publishing from web requests and right after commits, bounded in time.

A request must answer even when the broker is down or hung (accepting TCP connections but not
answering), so this Celery app's broker connections have short socket timeouts
(CELERY_PUBLISH_TIMEOUT) and at most one retry. The workers keep their longer timeouts, which
their blocking reads need.
"""

import logging
from functools import lru_cache

from celery import Celery
from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)


def broker_is_redis(url: str | None = None) -> bool:
    return (url or settings.CELERY_BROKER_URL).startswith(("redis://", "rediss://"))


@lru_cache(maxsize=1)
def publisher() -> Celery:
    """The Celery app to publish with (send_task by name) from web processes."""
    app = Celery("orderproj-publisher", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    timeout = settings.CELERY_PUBLISH_TIMEOUT
    if broker_is_redis():
        app.conf.broker_transport_options = {
            **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        }
    app.conf.broker_connection_timeout = timeout
    app.conf.task_publish_retry_policy = {
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.1,
        "interval_max": 0.1,
    }
    return app


def first_to_ask(key: str, *, seconds: float) -> bool:
    """Whether no other wake-up of this kind is on its way (one is now, for `seconds`); with
    no cache to tell (Redis away), yes: a wake-up too many is harmless, one too few is not."""
    try:
        return cache.add(key, 1, timeout=seconds)
    except Exception as exc:
        logger.warning("wake-up debounce unavailable (%s: %s)", type(exc).__name__, exc)
        return True


def forget_asked(key: str) -> None:
    """A worker took the wake-up: the next one is published again."""
    try:
        cache.delete(key)
    except Exception as exc:
        logger.warning("wake-up debounce unavailable (%s: %s)", type(exc).__name__, exc)
