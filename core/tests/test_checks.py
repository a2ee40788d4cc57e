"""The ground floor's system checks."""

from core.checks import sqlite_errors, sqlite_is_recent_enough


def test_an_old_sqlite_is_refused_for_the_embedded_mode():
    errors = sqlite_errors(["sqlite"], (3, 31, 1), "3.31.1")

    assert [e.id for e in errors] == ["core.E001"] and "3.31.1" in errors[0].msg
    assert sqlite_errors(["sqlite"], (3, 35, 0), "3.35.0") == []
    assert sqlite_errors(["postgresql"], (3, 31, 1), "3.31.1") == []


def test_this_machine_passes_the_check():
    assert sqlite_is_recent_enough(None) == []
