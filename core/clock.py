"""The clock that times compared across machines are read from: the database's.

Claims, leases, retry schedules (`ready_at`), progress and event times are written by one
machine and compared by others, and each machine's own clock may be off by seconds or
minutes. So they are written and compared with the database's time, in the statement that
uses it (`STATEMENT_TIMESTAMP()` on PostgreSQL), never with `timezone.now()`; Python code
that must know the time reads it from the database once (`db_now`). On SQLite (the embedded
mode: one machine, the database a file on it) the local clock is the database's.

A caller may pass an explicit `now` instead: tests move time that way.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import DateTimeField, Expression, ExpressionWrapper, Value
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.dateparse import parse_datetime

__all__ = ["NOW", "SqlTime", "at", "db_now", "now_expression", "read"]


class _StatementTime:
    """Stands for "the time of the statement that writes this" in a column's new value."""

    def __repr__(self) -> str:
        return "NOW"


NOW = _StatementTime()


def _database_clock() -> bool:
    """The database keeps its own time, apart from this machine's."""
    return connection.vendor == "postgresql"


def db_now() -> datetime:
    """The database's time now (one query on PostgreSQL)."""
    if not _database_clock():
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT STATEMENT_TIMESTAMP()")
        return cursor.fetchone()[0]


def read(value: datetime | str | None) -> datetime | None:
    """A time a raw statement returned, as Django reads the column (SQLite hands raw
    statements text, or a naive datetime of UTC)."""
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError(f"not a time: {value!r}")
        value = parsed
    if value is not None and timezone.is_naive(value):  # SQLite's: UTC, as Django stores it
        return timezone.make_aware(value, UTC)
    return value


class SqlTime:
    """A point in time for raw SQL: the statement's own "now" on the database's clock, or the
    time given; `sql(plus=...)` renders it, or that many seconds after it, with its params."""

    def __init__(self, now: datetime | None = None):
        self.given = now

    def sql(self, plus: float = 0.0) -> tuple[str, list[Any]]:
        if self.given is None and _database_clock():
            if not plus:
                return "STATEMENT_TIMESTAMP()", []
            return "(STATEMENT_TIMESTAMP() + %s * INTERVAL '1 second')", [plus]
        when = (self.given or timezone.now()) + timedelta(seconds=plus)
        return "%s", [connection.ops.adapt_datetimefield_value(when)]


def at(now: datetime | None = None) -> SqlTime:
    """The database's now (or `now`, when given) for raw statements."""
    return SqlTime(now)


def now_expression(*, plus: float = 0.0, now: datetime | None = None) -> Expression:
    """The same for the ORM: an expression of the database's time (or `now`), `plus` seconds
    after it."""
    base: Expression = Value(now, output_field=DateTimeField()) if now else Now()
    if not plus:
        return base
    return ExpressionWrapper(base + timedelta(seconds=plus), output_field=DateTimeField())
