"""The no-op task of the Celery reference rate (bench/reference.py). The bench's workers load
it with `--include bench.tasks`; it runs under the same app, broker and worker settings as the
order tasks (acks_late, prefetch 1, task events, the task-metrics signals), and only counts
itself in the broker's Redis so the driver can tell when every one has run."""

from functools import lru_cache

import redis
from celery import shared_task
from django.conf import settings

NOOP = "bench.noop"
NOOP_DONE_KEY = "bench:noop:done"


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5)


@shared_task(name=NOOP)
def noop() -> None:
    _redis().incr(NOOP_DONE_KEY)
