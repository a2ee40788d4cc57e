"""Small operational state that every process of a deployment must see: beat's heartbeat
(for /api/health/) and the Celery task metrics (for /metrics).

Web, workers and beat may run in different containers, and a worker is several processes, so
nothing here lives in process memory. It is kept next to the broker, which every process
already shares by construction: in the broker's Redis (keys under `orderproj:ops:`); in the
embedded mode (one machine, filesystem broker) beat's heartbeat is a file in VAR_DIR, and
task metrics are not kept (they need Redis).

Every function here is best effort with short timeouts: recording must never fail or stall
a task or beat, and reading is judged by the caller (health reports the error).
"""

import logging
import os
import time
from functools import lru_cache
from pathlib import Path

import redis
from django.conf import settings

from core.publisher import broker_is_redis

logger = logging.getLogger(__name__)

PREFIX = "orderproj:ops:"
BEAT_HEARTBEAT_KEY = f"{PREFIX}beat-heartbeat"
TASK_DURATIONS_KEY = f"{PREFIX}task-durations"
TASK_RETRIES_KEY = f"{PREFIX}task-retries"
# Upper bounds (seconds) of the task duration histogram's buckets.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # redis-py's pool notices a fork and reconnects, so prefork children may share this.
    return redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)


def redis_client(url: str | None = None) -> redis.Redis:
    """A client of the broker's Redis (settings read at call time, so tests may point it
    elsewhere)."""
    return _client(url or settings.CELERY_BROKER_URL)


def _heartbeat_file() -> Path:
    return Path(settings.VAR_DIR) / "beat-heartbeat"


# --- beat's heartbeat -------------------------------------------------------------------------


def beat_heartbeat_record(*, now: float | None = None) -> None:
    """Record that beat has just completed a tick. Raises on failure (the caller logs)."""
    now = time.time() if now is None else now
    if broker_is_redis():
        # Expires by itself, so a deployment that stops running beat is not told "stale"
        # forever by an old key (it is told "no heartbeat").
        redis_client().set(BEAT_HEARTBEAT_KEY, repr(now), ex=86_400)
        return
    path = _heartbeat_file()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(repr(now))
    tmp.replace(path)  # atomic: a reader never sees a half-written file


def beat_heartbeat_clear() -> None:
    if broker_is_redis():
        redis_client().delete(BEAT_HEARTBEAT_KEY)
    else:
        _heartbeat_file().unlink(missing_ok=True)


def beat_heartbeat_age(*, now: float | None = None) -> float | None:
    """Seconds since beat's last recorded tick, or None when none was ever recorded. Raises
    when the store does not answer."""
    now = time.time() if now is None else now
    if broker_is_redis():
        value = redis_client().get(BEAT_HEARTBEAT_KEY)
    else:
        try:
            value = _heartbeat_file().read_text()
        except FileNotFoundError:
            value = None
    return None if value is None else max(0.0, now - float(value))


# --- task metrics ------------------------------------------------------------------------------


def _bucket(duration: float) -> str:
    return next((repr(b) for b in DURATION_BUCKETS if duration <= b), "+Inf")


def task_metrics_record(*, task: str, state: str, duration: float) -> None:
    """Count one finished task run (state: success, failure, retry, ...) and its duration.
    One round trip; skipped without Redis. Never raises."""
    if not broker_is_redis():
        return
    field = f"{task}|{state}"
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.hincrby(TASK_DURATIONS_KEY, f"{field}|count", 1)
        pipe.hincrbyfloat(TASK_DURATIONS_KEY, f"{field}|sum", duration)
        pipe.hincrby(TASK_DURATIONS_KEY, f"{field}|le|{_bucket(duration)}", 1)
        if state == "retry":
            pipe.hincrby(TASK_RETRIES_KEY, task, 1)
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("task metrics not recorded (%s: %s)", type(exc).__name__, exc)


def task_metrics_read() -> tuple[dict[str, float], dict[str, int]]:
    """The raw task duration fields and the retries per task; empty without Redis."""
    if not broker_is_redis():
        return {}, {}
    pipe = redis_client().pipeline(transaction=False)
    pipe.hgetall(TASK_DURATIONS_KEY)
    pipe.hgetall(TASK_RETRIES_KEY)
    durations, retries = pipe.execute()
    return (
        {k.decode(): float(v) for k, v in durations.items()},
        {k.decode(): int(v) for k, v in retries.items()},
    )
