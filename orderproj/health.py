"""Reachability of what the system depends on, for load balancers and operators: the
database, the broker, at least one Celery worker (answering a ping) and celery-beat (its last
tick recent enough)."""

from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection

from orderproj.ops_state import beat_heartbeat_age


@dataclass(frozen=True)
class Check:
    ok: bool
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def _failed(exc: Exception) -> Check:
    return Check(ok=False, error=f"{type(exc).__name__}: {exc}")


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "not reachable"; the reason is reported
        return _failed(exc)
    return Check(ok=True)


def check_broker(*, timeout: float = 3.0) -> Check:
    from orderproj.celery import app

    try:
        with app.connection_for_write(settings.CELERY_BROKER_URL) as conn:
            # (celery-types annotate timeout as int; kombu compares it with elapsed seconds.)
            conn.ensure_connection(max_retries=1, timeout=timeout)  # type: ignore[arg-type]
            channel = conn.default_channel
            client = getattr(channel, "client", None)
            if client is not None and hasattr(client, "ping"):
                client.ping()  # Redis: proves the server answers, not only that a socket opened
    except Exception as exc:
        return _failed(exc)
    return Check(ok=True)


def check_worker(*, timeout: float | None = None) -> Check:
    """A worker answers a ping through the broker within the timeout (it returns as soon as
    the first one answers, so a healthy check is quick)."""
    from orderproj.celery import app

    timeout = settings.HEALTH_WORKER_PING_TIMEOUT if timeout is None else timeout
    try:
        with app.connection_for_write(settings.CELERY_BROKER_URL) as conn:
            replies = app.control.ping(timeout=timeout, limit=1, connection=conn)
    except Exception as exc:
        return _failed(exc)
    # (celery-types allow None, which only a broadcast that wants no reply returns.)
    workers = sorted(name for reply in replies for name in reply)  # type: ignore[union-attr]
    if not workers:
        return Check(ok=False, error=f"No worker answered a ping within {timeout:g}s.")
    return Check(ok=True, details={"answered": workers})


def check_beat(*, max_age: float | None = None) -> Check:
    """celery-beat ticked recently (orderproj.beat records a heartbeat every tick)."""
    max_age = settings.BEAT_HEARTBEAT_MAX_AGE_SECONDS if max_age is None else max_age
    try:
        age = beat_heartbeat_age()
    except Exception as exc:
        return _failed(exc)
    if age is None:
        return Check(ok=False, error="celery-beat has never recorded a tick.")
    details = {"last_tick_seconds_ago": round(age, 1), "max_age_seconds": max_age}
    if age > max_age:
        return Check(
            ok=False, error=f"celery-beat's last tick was {age:.0f}s ago.", details=details
        )
    return Check(ok=True, details=details)


def health_report() -> tuple[bool, dict[str, dict], list[str]]:
    """(healthy, every check, the names of what is down). The worker and beat are judged
    through the broker, so while it is unreachable they are reported not checked, and only
    the broker is named down: the one thing to fix."""
    checks = {"database": check_database(), "broker": check_broker()}
    if checks["broker"].ok:
        checks["worker"] = check_worker()
        checks["beat"] = check_beat()
    else:
        skipped = Check(ok=False, error="Not checked: the broker is unreachable.")
        checks["worker"] = checks["beat"] = skipped
    down = [name for name in ("database", "broker") if not checks[name].ok]
    if checks["broker"].ok:
        down += [name for name in ("worker", "beat") if not checks[name].ok]
    healthy = all(check.ok for check in checks.values())
    return healthy, {name: asdict(check) for name, check in checks.items()}, down
