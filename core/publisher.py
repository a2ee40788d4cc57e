"""Publishing from web requests and right after commits, bounded in time.

A request must answer even when the broker is down or hung (accepting TCP connections but not
answering), so this Celery app's broker connections have short socket timeouts
(CELERY_PUBLISH_TIMEOUT) and no retry, and so have the cache's (settings.CACHES: the
wake-up debounce asks it). Once either has not answered in time, this process leaves both
alone for RESTING_SECONDS (`broker_resting`): a request then waits on neither, and meanwhile
the wake-ups it would publish are made by beat (ORDER_WAKE_INTERVAL_SECONDS), the orders being
ready in the database. So a hung Redis costs one request the publish bound, not every request.
The workers keep their longer timeouts, which their blocking reads need.
"""

import logging
import threading
import time
from functools import lru_cache
from typing import Any

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
    return app


def publish_task(
    task: str,
    *,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    countdown: float | None = None,
) -> None:
    """Publish `task` by name, once: within the publish bound, no retry (a wake-up lost is
    made again by beat). Raises BrokerResting at once while the broker or the cache rests,
    or what publishing raised (the broker then rests)."""
    if broker_resting():
        raise BrokerResting("the broker did not answer moments ago; not asked again yet")
    try:
        publisher().send_task(task, args=args, kwargs=kwargs, countdown=countdown, retry=False)
    except Exception:
        broker_failed()
        raise


class BrokerResting(Exception):
    """The broker or the cache failed to answer in time moments ago (RESTING_SECONDS)."""


RESTING_SECONDS = 5.0
_resting_until = 0.0
_resting_lock = threading.Lock()


def broker_resting() -> bool:
    """The broker or the cache failed to answer in time moments ago: leave them alone."""
    return time.monotonic() < _resting_until


def broker_failed() -> None:
    """The broker or the cache did not answer in time: rest for RESTING_SECONDS."""
    global _resting_until
    with _resting_lock:
        _resting_until = time.monotonic() + RESTING_SECONDS


def broker_recovered() -> None:
    """Forget a failure (tests, between scenarios)."""
    global _resting_until
    with _resting_lock:
        _resting_until = 0.0


def first_to_ask(key: str, *, seconds: float) -> bool:
    """Whether no other wake-up of this kind is on its way (one is now, for `seconds`); with
    no cache to tell (Redis away), yes: a wake-up too many is harmless, one too few is not
    (and the publish that follows gives up at once while the broker rests)."""
    if broker_resting():
        return True
    try:
        return cache.add(key, 1, timeout=seconds)
    except Exception as exc:
        broker_failed()
        logger.warning("wake-up debounce unavailable (%s: %s)", type(exc).__name__, exc)
        return True


def forget_asked(key: str) -> None:
    """A worker took the wake-up: the next one is published again."""
    if broker_resting():
        return
    try:
        cache.delete(key)
    except Exception as exc:
        broker_failed()
        logger.warning("wake-up debounce unavailable (%s: %s)", type(exc).__name__, exc)
