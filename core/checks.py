"""System checks of the ground floor (run by every manage.py command and at start-up)."""

import sqlite3
from collections.abc import Iterable

from django.core.checks import Error, register
from django.db import connections

# The stock and order transitions are single statements with RETURNING and a MATERIALIZED
# common table expression, which SQLite has from 3.35 on.
SQLITE_NEEDED = (3, 35, 0)


def sqlite_errors(vendors: Iterable[str], version_info: tuple[int, ...], version: str):
    if "sqlite" not in set(vendors) or tuple(version_info) >= SQLITE_NEEDED:
        return []
    return [
        Error(
            f"SQLite {version} is too old for the embedded mode (3.35 or later is needed); use "
            "a newer Python build, or PostgreSQL via DATABASE_URL.",
            id="core.E001",
        )
    ]


@register()
def sqlite_is_recent_enough(app_configs, **kwargs) -> list[Error]:
    return sqlite_errors(
        (c.vendor for c in connections.all(initialized_only=False)),
        sqlite3.sqlite_version_info,
        sqlite3.sqlite_version,
    )
