"""SQLite storage shared by the simulators: connections, write transactions, stored config.

Several gunicorn worker processes, each with several threads, serve the same file, so each
thread keeps its own connection (opened on its first request, left with no transaction open
at the end of each), the file runs in WAL mode so readers never block the writer, and every
write happens inside `BEGIN IMMEDIATE`, which takes the write lock up front: a read-then-write
cannot be interleaved with another writer, and lock waits are handled by `busy_timeout`
instead of failing with SQLITE_BUSY half way through.

A file made by an earlier version of a simulator is brought up to date at start: new tables
are created, and a table whose definition changed is rebuilt with its rows.
"""

import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask

BUSY_TIMEOUT_MS = 30_000


def connect(db_path: str) -> sqlite3.Connection:
    """A connection in autocommit mode; transactions are opened explicitly."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = NORMAL")  # durable enough for a simulator under WAL
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Hold the database write lock for the block; commit on success, roll back on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


CONFIG_SCHEMA = """
CREATE TABLE IF NOT EXISTS config (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    defaults TEXT NOT NULL,
    current TEXT NOT NULL,
    generation INTEGER NOT NULL
);
"""


CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)\s*(\(.*)", re.DOTALL)


def rebuild_if_changed(conn: sqlite3.Connection, statement: str) -> None:
    """Rebuild a table that an earlier definition made (say, with a narrower CHECK), keeping
    its rows (the columns both definitions have) and its AUTOINCREMENT counter, since SQLite
    cannot change a column's constraints in place. In the caller's write transaction; its
    indexes are dropped with it and made again by the schema's CREATE INDEX IF NOT EXISTS."""
    match = CREATE_TABLE.search(statement)
    if match is None:
        return
    name, definition = match[1], match[2].strip()
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    # SQLite keeps the statement's text from the opening parenthesis on as it was written.
    if row is None or row[0][row[0].index("(") :].strip() == definition:
        return
    had = {column for _, column, *_ in conn.execute(f"PRAGMA table_info({name})")}
    staging = f"{name}__rebuilt"
    conn.execute(f"CREATE TABLE {staging} {definition}")
    kept = [c for _, c, *_ in conn.execute(f"PRAGMA table_info({staging})") if c in had]
    columns = ", ".join(kept)
    conn.execute(f"INSERT INTO {staging} ({columns}) SELECT {columns} FROM {name}")
    counter = _autoincrement_counter(conn, name)
    conn.execute(f"DROP TABLE {name}")
    conn.execute(f"ALTER TABLE {staging} RENAME TO {name}")  # its counter is renamed with it
    if counter is not None:
        counter = max(counter, _autoincrement_counter(conn, name) or 0)
        conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (name,))
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, counter))


def _autoincrement_counter(conn: sqlite3.Connection, table: str) -> int | None:
    """The highest id an AUTOINCREMENT table ever gave (ids never come back after deletes)."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
        return None
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    return row[0] if row else None


def init_database(db_path: str, schema: str, defaults: dict[str, Any]) -> None:
    """Create (or bring up to date) the tables and store the behaviour config.

    A worker that restarts with the same defaults keeps the config an operator or a test set
    through the control API; a deployment started with different defaults (the env changed)
    takes the new ones, since that is what whoever changed the env asked for.
    """
    conn = connect(db_path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
        with write_transaction(conn):
            for statement in (CONFIG_SCHEMA + schema).split(";"):
                if statement.strip():
                    rebuild_if_changed(conn, statement)
                    conn.execute(statement)
            row = conn.execute("SELECT defaults FROM config WHERE id = 1").fetchone()
            if row is None or json.loads(row[0]) != defaults:
                encoded = json.dumps(defaults)
                conn.execute(
                    "INSERT INTO config (id, defaults, current, generation) VALUES (1, ?, ?, 1)"
                    " ON CONFLICT (id) DO UPDATE SET defaults = excluded.defaults,"
                    " current = excluded.current, generation = generation + 1",
                    (encoded, encoded),
                )
    finally:
        conn.close()


def install_request_connection(app: Flask, db_path: str) -> Callable[[], sqlite3.Connection]:
    """Give each serving thread its own connection, kept across its requests (opening one
    costs more than most requests here); returns the getter the views use."""
    local = threading.local()

    def get_db() -> sqlite3.Connection:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = connect(db_path)
        return conn

    @app.teardown_appcontext
    def end_request(_exc: BaseException | None) -> None:
        conn = getattr(local, "conn", None)
        if conn is not None and conn.in_transaction:
            conn.execute("ROLLBACK")  # never carry a transaction into the next request

    return get_db


def read_config(conn: sqlite3.Connection) -> tuple[dict[str, Any], int]:
    """The current behaviour config and its generation (bumped on every change)."""
    current, generation = conn.execute(
        "SELECT current, generation FROM config WHERE id = 1"
    ).fetchone()
    return json.loads(current), generation


def update_config(conn: sqlite3.Connection, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply a (validated) partial update atomically; returns the new config."""
    with write_transaction(conn):
        config, _ = read_config(conn)
        config.update(changes)
        conn.execute(
            "UPDATE config SET current = ?, generation = generation + 1 WHERE id = 1",
            (json.dumps(config),),
        )
    return config


def reset_config(conn: sqlite3.Connection) -> dict[str, Any]:
    """Restore the defaults; call inside the caller's write transaction."""
    conn.execute("UPDATE config SET current = defaults, generation = generation + 1 WHERE id = 1")
    return read_config(conn)[0]


@contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Several SELECTs that see one consistent state of the file (a WAL read transaction)."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")
