"""Simulated webhook receiver: a customer's system taking our signed order webhooks.

Every delivery is recorded as it arrives, with the status it is answered; when a secret is
configured its Standard Webhooks signature is checked and the result recorded (refused with
401 only if the config says so). The answer is decided per delivery, in this order: the
outcome pinned for its hook (`PUT /_control/hooks/<name>`: one receiver of several misbehaving),
the next scripted outcome, `always_fail`, a seeded draw against `fail_rate`, success.
"""

import base64
import binascii
import hashlib
import hmac
import json
import random
import re
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request

from simulators.storage import (
    init_database,
    install_request_connection,
    read_config,
    read_snapshot,
    reset_config,
    update_config,
    write_transaction,
)
from simulators.web import (
    ApiError,
    bad_request,
    boolean,
    dripped,
    hang,
    http_error_status,
    json_body,
    json_response,
    non_negative_int,
    rate,
    register_error_handlers,
    reject_unknown_fields,
    simulate_latency,
    utc_now,
    validate_config,
)

SECRET_PREFIX = "whsec_"
MAX_SECRET_LENGTH = 256
SIGNATURE_TOLERANCE_S = 5 * 60
TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,12}")


def signing_key(secret: str) -> bytes | None:
    """The HMAC key of a `whsec_<base64>` secret (the prefix is optional, as in the Standard
    Webhooks libraries); None when it is not base64 or empty."""
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):  # ValueError: not ASCII
        return None
    return key or None


def verify(
    secret: str, headers: Mapping[str, str | None], body: bytes | str, *, now: float | None = None
) -> bool:
    """Whether a delivery is signed with `secret`, by the Standard Webhooks scheme.

    The signed content is `{webhook-id}.{webhook-timestamp}.{raw body}`; `webhook-signature`
    holds space-separated `v1,<base64 HMAC-SHA256>` entries, any of which may match; the
    timestamp (Unix seconds) must be within five minutes of now, so an old delivery cannot be
    replayed. Header names are matched case-insensitively.
    """
    key = signing_key(secret)
    found = {name.lower(): value for name, value in headers.items()}
    webhook_id = found.get("webhook-id")
    timestamp = found.get("webhook-timestamp")
    signatures = found.get("webhook-signature")
    if key is None or not webhook_id or not timestamp or not signatures:
        return False
    if not TIMESTAMP_PATTERN.fullmatch(timestamp):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > SIGNATURE_TOLERANCE_S:
        return False
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()
    expected = base64.b64encode(digest)
    for entry in signatures.split():
        version, _, signature = entry.partition(",")
        # Bytes: compare_digest refuses str with non-ASCII characters, which a header may hold.
        if version == "v1" and hmac.compare_digest(signature.encode(errors="replace"), expected):
            return True
    return False


def parse_secret(value: str) -> str:
    """A secret as configured: empty (signatures are not checked) or `whsec_<base64>`;
    ValueError otherwise."""
    if value and (
        len(value) > MAX_SECRET_LENGTH
        or not value.startswith(SECRET_PREFIX)
        or signing_key(value) is None
    ):
        raise ValueError(f"must be empty or {SECRET_PREFIX} followed by a base64 key")
    return value


def webhook_secret(name: str, value: Any) -> str:
    message = f"{name} must be empty or {SECRET_PREFIX} followed by a base64 key"
    if not isinstance(value, str):
        raise bad_request(message)
    try:
        return parse_secret(value)
    except ValueError:
        raise bad_request(message) from None


DEFAULT_CONFIG: dict[str, Any] = {
    "fail_rate": 0.0,
    "latency_ms": 0,
    "seed": 0,
    "secret": "",  # empty: signatures are not checked (recorded as verified null)
    "always_fail": False,
    "fail_status": 500,
    "timeout_delay_ms": 10_000,
    "slow_ms": 1500,
    "drip_interval_ms": 200,  # drip: the answer's body one byte every drip_interval_ms
    "hang_ms": 30_000,  # hang: nothing answered for hang_ms, then 503
    "reject_unverified": False,  # answer 401 to a delivery whose signature does not verify
}
CONFIG_FIELDS = {
    "fail_rate": rate,
    "latency_ms": non_negative_int,
    "seed": non_negative_int,
    "secret": webhook_secret,
    "always_fail": boolean,
    "fail_status": http_error_status,
    "timeout_delay_ms": non_negative_int,
    "slow_ms": non_negative_int,
    "drip_interval_ms": non_negative_int,
    "hang_ms": non_negative_int,
    "reject_unverified": boolean,
}
SCRIPTABLE_OUTCOMES = ("ok", "fail", "timeout", "slow", "drip", "hang")
MAX_SCRIPT = 10_000  # outcomes per POST /_control/script
RECORDED_HEADERS = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "user-agent",
)
HOOK_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_BODY_BYTES = 1024 * 1024
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
RECORD_FIELDS = ("id", "hook", "headers", "body", "received_at", "status", "outcome", "verified")

SCHEMA = """
CREATE TABLE IF NOT EXISTS received (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hook TEXT NOT NULL,
    webhook_id TEXT,
    headers TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at TEXT NOT NULL,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (
        outcome IN ('ok', 'fail', 'timeout', 'slow', 'drip', 'hang', 'rejected')
    ),
    verified INTEGER CHECK (verified IN (0, 1))
);
CREATE INDEX IF NOT EXISTS received_by_webhook_id ON received (webhook_id, id);
CREATE TABLE IF NOT EXISTS script (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    outcome TEXT NOT NULL
);
-- How many fail_rate draws were made since the config last changed (its generation).
CREATE TABLE IF NOT EXISTS draws (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL,
    draws INTEGER NOT NULL
);
INSERT OR IGNORE INTO draws (id, generation, draws) VALUES (1, 0, 0);
-- An outcome every delivery to one hook gets, whatever the script and the config say.
CREATE TABLE IF NOT EXISTS hook_outcomes (
    hook TEXT PRIMARY KEY,
    outcome TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Answer:
    """What a delivery is answered, after how long, and how fast its body goes out."""

    outcome: str  # a SCRIPTABLE_OUTCOMES, or rejected (the signature did not verify)
    status: int
    delay_ms: int
    drip_interval_ms: int = 0  # drip: one byte of the body every drip_interval_ms


def draw(conn: sqlite3.Connection, seed: int, generation: int) -> float:
    """The next number of a sequence that starts over whenever the config changes: the n-th
    draw since then is Random(f"{seed}:{n}"), whichever process makes it. In the caller's
    write transaction."""
    (n,) = conn.execute(
        "UPDATE draws SET draws = CASE WHEN generation = ? THEN draws + 1 ELSE 1 END,"
        " generation = ? RETURNING draws",
        (generation, generation),
    ).fetchone()
    return random.Random(f"{seed}:{n}").random()


def next_outcome(
    conn: sqlite3.Connection, config: dict[str, Any], generation: int, hook: str
) -> str:
    """The hook's pinned outcome, else the head of the script (consumed), else always_fail,
    else the seeded draw."""
    pinned = conn.execute("SELECT outcome FROM hook_outcomes WHERE hook = ?", (hook,)).fetchone()
    if pinned is not None:
        return pinned[0]
    row = conn.execute("SELECT position, outcome FROM script ORDER BY position LIMIT 1").fetchone()
    if row is not None:
        conn.execute("DELETE FROM script WHERE position = ?", (row[0],))
        return row[1]
    if config["always_fail"]:
        return "fail"
    return "fail" if draw(conn, config["seed"], generation) < config["fail_rate"] else "ok"


def answer_for(outcome: str, config: dict[str, Any]) -> Answer:
    return {
        "ok": Answer("ok", 200, config["latency_ms"]),
        "fail": Answer("fail", config["fail_status"], config["latency_ms"]),
        "timeout": Answer("timeout", 200, config["timeout_delay_ms"]),
        "slow": Answer("slow", 200, config["slow_ms"]),
        "drip": Answer("drip", 200, config["latency_ms"], config["drip_interval_ms"]),
        # Recorded as the 503 it ends with, which the sender never waits for.
        "hang": Answer("hang", 503, config["hang_ms"]),
    }[outcome]


def delivery_receive(
    conn: sqlite3.Connection, *, hook: str, headers: dict[str, str | None], body: bytes
) -> Answer:
    """Decide a delivery's answer and record it, on arrival, in one write transaction: the
    script and the draws are taken one delivery at a time, each entry once. A delivery whose
    signature is refused takes neither."""
    with write_transaction(conn):
        config, generation = read_config(conn)
        verified = verify(config["secret"], headers, body) if config["secret"] else None
        if verified is False and config["reject_unverified"]:
            answer = Answer("rejected", 401, 0)
        else:
            answer = answer_for(next_outcome(conn, config, generation, hook), config)
        conn.execute(
            "INSERT INTO received (hook, webhook_id, headers, body, received_at, status,"
            " outcome, verified) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                hook,
                headers["webhook-id"],
                json.dumps(headers),
                body.decode(errors="replace"),
                utc_now(),
                answer.status,
                answer.outcome,
                verified,
            ),
        )
    return answer


def query_int(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise bad_request(f"{name} must be between {low} and {high}")
    return value


def received_page(
    conn: sqlite3.Connection, *, after_id: int, limit: int, webhook_id: str | None
) -> dict[str, Any]:
    """The deliveries after `after_id`, oldest first, one row more to know if it is the last
    page."""
    where = "id > ?" + (" AND webhook_id = ?" if webhook_id is not None else "")
    params = (after_id, webhook_id) if webhook_id is not None else (after_id,)
    rows = conn.execute(
        f"SELECT {', '.join(RECORD_FIELDS)} FROM received WHERE {where} ORDER BY id LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    results = []
    for row in rows[:limit]:
        record = dict(zip(RECORD_FIELDS, row, strict=True))
        record["headers"] = json.loads(record["headers"])
        record["verified"] = None if record["verified"] is None else bool(record["verified"])
        results.append(record)
    return {
        "results": results,
        "next_after_id": results[-1]["id"] if len(rows) > limit else None,
    }


def received_stats(conn: sqlite3.Connection) -> dict[str, Any]:
    with read_snapshot(conn):
        status_rows = conn.execute("SELECT status, COUNT(*) FROM received GROUP BY status")
        by_status = {str(status): count for status, count in status_rows}
        by_outcome = dict(conn.execute("SELECT outcome, COUNT(*) FROM received GROUP BY outcome"))
        webhook_ids = conn.execute("SELECT COUNT(DISTINCT webhook_id) FROM received").fetchone()[0]
        verified = dict(
            conn.execute(
                "SELECT verified, COUNT(*) FROM received WHERE verified IS NOT NULL"
                " GROUP BY verified"
            )
        )
        pending = conn.execute("SELECT COUNT(*) FROM script").fetchone()[0]
    return {
        "received": sum(by_status.values()),
        "by_status": by_status,
        "by_outcome": by_outcome,
        "webhook_ids": webhook_ids,
        "verified": {"true": verified.get(1, 0), "false": verified.get(0, 0)},
        "script_pending": pending,
    }


def check_hook_name(name: str) -> None:
    if not HOOK_NAME.fullmatch(name):
        raise bad_request("the hook name must be 1 to 64 characters of A-Z, a-z, 0-9, _ or -")


def create_app(db_path: str, defaults: dict[str, Any] | None = None) -> Flask:
    """The webhook receiver app, storing everything in the SQLite file at db_path."""
    config_defaults = {**DEFAULT_CONFIG, **validate_config(defaults or {}, CONFIG_FIELDS)}
    init_database(db_path, SCHEMA, config_defaults)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES  # larger: 413
    register_error_handlers(app)
    get_db = install_request_connection(app, db_path)

    @app.post("/hooks/<name>")
    def deliver(name: str) -> Response:
        check_hook_name(name)
        headers = {header: request.headers.get(header) for header in RECORDED_HEADERS}
        answer = delivery_receive(get_db(), hook=name, headers=headers, body=request.get_data())
        if answer.outcome == "hang":
            hang(answer.delay_ms)
        simulate_latency(answer.delay_ms)
        if answer.outcome == "rejected":
            raise ApiError(401, "invalid_signature", "the webhook signature does not verify")
        if answer.outcome == "fail":
            raise ApiError(answer.status, "simulated_failure", "simulated receiver failure")
        if answer.outcome == "drip":
            return dripped(json_response({"received": True}), answer.drip_interval_ms)
        return json_response({"received": True})

    @app.get("/health")
    def health() -> Response:
        return json_response({"status": "ok"})

    @app.get("/_control/config")
    def get_config() -> Response:
        return json_response(read_config(get_db())[0])

    @app.route("/_control/config", methods=["PUT", "POST"])
    def put_config() -> Response:
        changes = validate_config(json_body(), CONFIG_FIELDS)
        return json_response(update_config(get_db(), changes))

    @app.post("/_control/script")
    def push_script() -> Response:
        """{"outcomes": [...]}: appended to the script, each answering one delivery."""
        data = json_body()
        reject_unknown_fields(data, {"outcomes"})
        outcomes = data.get("outcomes")
        if (
            not isinstance(outcomes, list)
            or len(outcomes) > MAX_SCRIPT
            or any(o not in SCRIPTABLE_OUTCOMES for o in outcomes)
        ):
            raise bad_request(
                f"outcomes must be a list of at most {MAX_SCRIPT} of"
                f" {', '.join(SCRIPTABLE_OUTCOMES)}"
            )
        conn = get_db()
        with write_transaction(conn):
            conn.executemany("INSERT INTO script (outcome) VALUES (?)", [(o,) for o in outcomes])
            pending = [o for (o,) in conn.execute("SELECT outcome FROM script ORDER BY position")]
        return json_response({"pending": pending})

    @app.route("/_control/hooks/<name>", methods=["PUT", "POST"])
    def pin_outcome(name: str) -> Response:
        """{"outcome": "hang"}: every delivery to hook `name` gets that answer from now on
        (one of the SCRIPTABLE_OUTCOMES; null: decided as for any hook again)."""
        check_hook_name(name)
        data = json_body()
        reject_unknown_fields(data, {"outcome"})
        outcome = data.get("outcome")
        if outcome is not None and outcome not in SCRIPTABLE_OUTCOMES:
            raise bad_request(f"outcome must be null or one of {', '.join(SCRIPTABLE_OUTCOMES)}")
        conn = get_db()
        with write_transaction(conn):
            if outcome is None:
                conn.execute("DELETE FROM hook_outcomes WHERE hook = ?", (name,))
            else:
                conn.execute(
                    "INSERT INTO hook_outcomes (hook, outcome) VALUES (?, ?)"
                    " ON CONFLICT (hook) DO UPDATE SET outcome = excluded.outcome",
                    (name, outcome),
                )
        return json_response({"hook": name, "outcome": outcome})

    @app.get("/_control/received")
    def list_received() -> Response:
        """?after_id=N&limit=M&webhook_id=X: deliveries oldest first; `next_after_id` is the
        after_id of the next page, null on the last."""
        after_id = query_int(request.args, "after_id", 0, 0, 2**63 - 1)
        limit = query_int(request.args, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        page = received_page(
            get_db(), after_id=after_id, limit=limit, webhook_id=request.args.get("webhook_id")
        )
        return json_response(page)

    @app.get("/_control/stats")
    def stats() -> Response:
        return json_response(received_stats(get_db()))

    @app.post("/_control/reset")
    def reset() -> Response:
        """Forget every delivery, the script and the pinned outcomes, restore the default
        config. Record ids keep growing (AUTOINCREMENT), so an after_id from before a reset
        never hides a record."""
        conn = get_db()
        with write_transaction(conn):
            conn.execute("DELETE FROM received")
            conn.execute("DELETE FROM script")
            conn.execute("DELETE FROM hook_outcomes")
            restored = reset_config(conn)
        return json_response({"config": restored})

    return app
