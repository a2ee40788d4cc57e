"""Reachability of what the API depends on, for load balancers and operators."""

from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import connection


@dataclass(frozen=True)
class Check:
    ok: bool
    error: str = ""


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "not reachable"; the reason is reported
        return Check(ok=False, error=f"{type(exc).__name__}: {exc}")
    return Check(ok=True)


def check_broker(*, timeout: float = 3.0) -> Check:
    from orderproj.celery import app

    try:
        with app.connection_for_write(settings.CELERY_BROKER_URL) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
            channel = conn.default_channel
            client = getattr(channel, "client", None)
            if client is not None and hasattr(client, "ping"):
                client.ping()  # Redis: proves the server answers, not only that a socket opened
    except Exception as exc:
        return Check(ok=False, error=f"{type(exc).__name__}: {exc}")
    return Check(ok=True)


def health_report() -> tuple[bool, dict[str, dict]]:
    checks = {"database": check_database(), "broker": check_broker()}
    return all(c.ok for c in checks.values()), {name: asdict(c) for name, c in checks.items()}
