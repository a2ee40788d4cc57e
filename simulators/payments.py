"""Simulated payment service: charges stored by idempotency key, refunds, injected failures.

The outcome of a new charge is a pure function of (seed, idempotency key, number of earlier
attempts with that key), so a run is reproducible whichever worker process serves which
request. A scripted queue of outcomes, kept in storage, overrides the rates for tests.
"""

import random
import re
import sqlite3
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
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
    json_body,
    json_response,
    non_negative_int,
    path_key,
    rate,
    register_error_handlers,
    reject_unknown_fields,
    require_str,
    simulate_latency,
    utc_now,
    validate_config,
)

DEFAULT_CONFIG: dict[str, Any] = {
    "decline_rate": 0.0,
    "error_rate": 0.0,
    "timeout_rate": 0.0,
    "latency_ms": 0,
    "timeout_delay_ms": 3000,
    "seed": 0,
}
CONFIG_FIELDS = {
    "decline_rate": rate,
    "error_rate": rate,
    "timeout_rate": rate,
    "latency_ms": non_negative_int,
    "timeout_delay_ms": non_negative_int,
    "seed": non_negative_int,
}
SCRIPTABLE_OUTCOMES = ("capture", "decline", "error", "timeout")
DECLINE_REASONS = ("card_declined", "insufficient_funds", "expired_card")
# At most cents and a sane magnitude: a plain decimal string, no exponent or sign.
AMOUNT_PATTERN = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")
CURRENCY_PATTERN = re.compile(r"[A-Za-z]{3}")
CHARGE_FIELDS = (
    "id",
    "idempotency_key",
    "amount",
    "currency",
    "status",
    "decline_reason",
    "reference",
    "created_at",
    "refunded_at",
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    idempotency_key TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('captured', 'declined', 'refunded')),
    decline_reason TEXT,
    reference TEXT,
    created_at TEXT NOT NULL,
    refunded_at TEXT
);
CREATE TABLE IF NOT EXISTS charge_requests (
    idempotency_key TEXT PRIMARY KEY,
    requests INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS script (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    outcome TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class ChargeRequest:
    idempotency_key: str
    amount: str  # canonical, two decimals
    currency: str  # upper case
    reference: str | None


@dataclass(frozen=True)
class Outcome:
    """What a new charge attempt does."""

    status: str | None  # the charge to store; None: answer 503 and store nothing
    late: bool = False  # answer only after timeout_delay_ms (the caller times out)
    decline_reason: str | None = None


@dataclass(frozen=True)
class ChargeResult:
    """The answer to a charge attempt: a charge (new or stored), or an error."""

    charge: dict[str, Any] | None = None
    created: bool = False
    late: bool = False
    error: ApiError | None = None


def parse_charge_request(data: dict[str, Any]) -> ChargeRequest:
    reject_unknown_fields(data, {"amount", "currency", "idempotency_key", "reference"})
    key = path_key(require_str(data, "idempotency_key"), "idempotency_key")
    amount = data.get("amount")
    if not isinstance(amount, str) or not AMOUNT_PATTERN.fullmatch(amount):
        raise bad_request('amount must be a decimal string such as "12.34"')
    value = Decimal(amount)
    if value <= 0:
        raise bad_request("amount must be positive")
    currency = data.get("currency")
    if not isinstance(currency, str) or not CURRENCY_PATTERN.fullmatch(currency):
        raise bad_request("currency must be a three-letter ISO 4217 code")
    reference = data.get("reference")
    if reference is not None and (not isinstance(reference, str) or len(reference) > 255):
        raise bad_request("reference must be a string of at most 255 characters")
    return ChargeRequest(key, f"{value:.2f}", currency.upper(), reference)


def roll_outcome(config: dict[str, Any], key: str, previous_requests: int) -> Outcome:
    """The rates applied in order: error, timeout (stored, answered late), decline."""
    rng = random.Random(f"{config['seed']}:{key}:{previous_requests}")
    if rng.random() < config["error_rate"]:
        return Outcome(status=None)
    late = rng.random() < config["timeout_rate"]
    if rng.random() < config["decline_rate"]:
        return Outcome("declined", late=late, decline_reason=rng.choice(DECLINE_REASONS))
    return Outcome("captured", late=late)


def scripted_outcome(name: str) -> Outcome:
    return {
        "capture": Outcome("captured"),
        "decline": Outcome("declined", decline_reason="card_declined"),
        "error": Outcome(status=None),
        "timeout": Outcome("captured", late=True),
    }[name]


def fetch_charge(conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {', '.join(CHARGE_FIELDS)} FROM charges WHERE idempotency_key = ?", (key,)
    ).fetchone()
    return dict(zip(CHARGE_FIELDS, row, strict=True)) if row else None


def next_outcome(conn: sqlite3.Connection, config: dict[str, Any], key: str, n: int) -> Outcome:
    """The head of the scripted queue if any (consumed), else the seeded roll."""
    row = conn.execute("SELECT position, outcome FROM script ORDER BY position LIMIT 1").fetchone()
    if row is None:
        return roll_outcome(config, key, n)
    conn.execute("DELETE FROM script WHERE position = ?", (row[0],))
    return scripted_outcome(row[1])


def charge_create(
    conn: sqlite3.Connection, config: dict[str, Any], req: ChargeRequest
) -> ChargeResult:
    """Count the attempt and answer the stored charge or make a new one, in one transaction.

    The write lock makes concurrent attempts with one key queue up, so only the first can
    create the charge; the others find it and answer it. Errors are returned rather than
    raised so that the attempt count is committed with them.
    """
    key = req.idempotency_key
    with write_transaction(conn):
        previous_requests = conn.execute(
            "SELECT COALESCE((SELECT requests FROM charge_requests WHERE idempotency_key = ?), 0)",
            (key,),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO charge_requests (idempotency_key, requests) VALUES (?, 1)"
            " ON CONFLICT (idempotency_key) DO UPDATE SET requests = requests + 1",
            (key,),
        )
        stored = fetch_charge(conn, key)
        if stored is not None:
            if (stored["amount"], stored["currency"]) == (req.amount, req.currency):
                return ChargeResult(stored)
            message = (
                f"idempotency_key {key!r} was used for {stored['amount']} {stored['currency']}"
            )
            return ChargeResult(error=ApiError(409, "idempotency_key_reused", message))
        outcome = next_outcome(conn, config, key, previous_requests)
        if outcome.status is None:
            error = ApiError(503, "service_unavailable", "simulated payment service failure")
            return ChargeResult(error=error)
        charge = {
            "id": f"ch_{uuid.uuid4().hex}",
            "idempotency_key": key,
            "amount": req.amount,
            "currency": req.currency,
            "status": outcome.status,
            "decline_reason": outcome.decline_reason,
            "reference": req.reference,
            "created_at": utc_now(),
            "refunded_at": None,
        }
        conn.execute(
            f"INSERT INTO charges ({', '.join(CHARGE_FIELDS)})"
            f" VALUES ({', '.join('?' * len(CHARGE_FIELDS))})",
            [charge[field] for field in CHARGE_FIELDS],
        )
    return ChargeResult(charge, created=True, late=outcome.late)


def charge_refund(conn: sqlite3.Connection, key: str) -> dict[str, Any]:
    """captured -> refunded; safe to repeat (a refunded charge answers as it is)."""
    with write_transaction(conn):
        charge = fetch_charge(conn, key)
        if charge is None:
            raise ApiError(404, "not_found", f"no charge with idempotency_key {key!r}")
        if charge["status"] == "declined":
            raise ApiError(409, "not_refundable", "a declined charge cannot be refunded")
        if charge["status"] == "captured":
            charge.update(status="refunded", refunded_at=utc_now())
            conn.execute(
                "UPDATE charges SET status = ?, refunded_at = ? WHERE idempotency_key = ?",
                (charge["status"], charge["refunded_at"], key),
            )
    return charge


def charge_stats(conn: sqlite3.Connection, key: str | None) -> dict[str, Any]:
    with read_snapshot(conn):
        by_status = dict(conn.execute("SELECT status, COUNT(*) FROM charges GROUP BY status"))
        charge_requests = conn.execute(
            "SELECT COALESCE(SUM(requests), 0) FROM charge_requests"
        ).fetchone()[0]
        keys = conn.execute(
            "SELECT r.idempotency_key, r.requests, c.status FROM charge_requests AS r"
            " LEFT JOIN charges AS c USING (idempotency_key)"
            + (" WHERE r.idempotency_key = ?" if key is not None else ""),
            (key,) if key is not None else (),
        ).fetchall()
    return {
        "charges": sum(by_status.values()),
        **{status: by_status.get(status, 0) for status in ("captured", "declined", "refunded")},
        "charge_requests": charge_requests,
        "by_key": {k: {"requests": n, "status": status} for k, n, status in keys},
    }


def create_app(db_path: str, defaults: dict[str, Any] | None = None) -> Flask:
    """The payment service app, storing everything in the SQLite file at db_path."""
    config_defaults = {**DEFAULT_CONFIG, **validate_config(defaults or {}, CONFIG_FIELDS)}
    init_database(db_path, SCHEMA, config_defaults)
    app = Flask(__name__)
    register_error_handlers(app)
    get_db = install_request_connection(app, db_path)

    def config() -> dict[str, Any]:
        return read_config(get_db())[0]

    @app.post("/charges")
    def create_charge() -> Response:
        req = parse_charge_request(json_body())
        current = config()
        simulate_latency(current["latency_ms"])
        result = charge_create(get_db(), current, req)
        if result.error is not None:
            raise result.error
        if result.late:
            time.sleep(current["timeout_delay_ms"] / 1000)
        return json_response(result.charge, 201 if result.created else 200)

    @app.get("/charges/<key>")
    def get_charge(key: str) -> Response:
        simulate_latency(config()["latency_ms"])
        charge = fetch_charge(get_db(), key)
        if charge is None:
            raise ApiError(404, "not_found", f"no charge with idempotency_key {key!r}")
        return json_response(charge)

    @app.post("/charges/<key>/refund")
    def refund_charge(key: str) -> Response:
        simulate_latency(config()["latency_ms"])
        return json_response(charge_refund(get_db(), key))

    @app.get("/health")
    def health() -> Response:
        return json_response({"status": "ok"})

    @app.get("/_control/config")
    def get_config() -> Response:
        return json_response(config())

    @app.put("/_control/config")
    def put_config() -> Response:
        changes = validate_config(json_body(), CONFIG_FIELDS)
        return json_response(update_config(get_db(), changes))

    @app.post("/_control/script")
    def push_script() -> Response:
        outcomes = json_body().get("outcomes")
        if not isinstance(outcomes, list) or any(o not in SCRIPTABLE_OUTCOMES for o in outcomes):
            raise bad_request(f"outcomes must be a list of {', '.join(SCRIPTABLE_OUTCOMES)}")
        conn = get_db()
        with write_transaction(conn):
            conn.executemany("INSERT INTO script (outcome) VALUES (?)", [(o,) for o in outcomes])
            pending = [o for (o,) in conn.execute("SELECT outcome FROM script ORDER BY position")]
        return json_response({"pending": pending})

    @app.post("/_control/reset")
    def reset() -> Response:
        conn = get_db()
        with write_transaction(conn):
            for table in ("charges", "charge_requests", "script"):
                conn.execute(f"DELETE FROM {table}")
            restored = reset_config(conn)
        return json_response({"config": restored})

    @app.get("/_control/stats")
    def stats() -> Response:
        return json_response(charge_stats(get_db(), request.args.get("key")))

    return app
