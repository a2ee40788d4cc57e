"""Simulated payment service: charges stored by idempotency key, refunds, injected failures.

The outcome of a new charge is a pure function of (seed, idempotency key, number of earlier
attempts with that key), so a run is reproducible whichever worker process serves which
request. A scripted queue of outcomes, kept in storage, overrides the rates for tests.

Every charge, lookup and refund is first decided on arrival (`arrival`), in this order: an
outage (503), else a forced answer of its kind (POST /_control/fail_next, consumed), else the
seeded fault rates (web.roll_fault: hang, transient, lost, drip, malformed), each a pure
function of (seed, kind, key, number of earlier requests of that kind with that key). Only
then does a new charge roll its outcome (error, timeout, decline) as above.
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
    Fault,
    answered,
    bad_request,
    boolean,
    error_response,
    forced_fault,
    http_error_statuses,
    json_body,
    json_response,
    non_negative_int,
    parse_forced_answer,
    path_key,
    positive_int,
    rate,
    refuse_or_hang,
    register_error_handlers,
    reject_unknown_fields,
    require_str,
    roll_fault,
    shaped,
    simulate_latency,
    status_choice,
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
    # While true, a new charge waits at the provider, being processed, until it is false
    # again (or HOLD_LIMIT_S passed): a test's way to have a charge in flight for as long as
    # it needs, whatever the machine's speed.
    "hold_charges": False,
    # The whole service down: every charge, lookup and refund is answered 503 (and logged).
    "outage": False,
    # The answer to a charge whose key another request is being processed with: Stripe says
    # 409, some providers 400 or 422 (the code is idempotency_key_in_use whichever).
    "in_use_status": 409,
    # Faults of any request (charge, lookup, refund), rolled in this order (web.roll_fault):
    # hang (nothing done, nothing answered for hang_ms), transient (answered one of
    # transient_statuses, nothing done), lost (done, answered after timeout_delay_ms), drip
    # (done, the answer a byte every drip_interval_ms), malformed (done, answered 200 with a
    # body the client cannot use).
    "hang_rate": 0.0,
    "transient_rate": 0.0,
    "transient_statuses": [408, 425, 429],
    "lost_rate": 0.0,
    "drip_rate": 0.0,
    "malformed_rate": 0.0,
    "hang_ms": 30_000,
    "drip_interval_ms": 200,
}
CONFIG_FIELDS = {
    "decline_rate": rate,
    "error_rate": rate,
    "timeout_rate": rate,
    "latency_ms": non_negative_int,
    "timeout_delay_ms": non_negative_int,
    "seed": non_negative_int,
    "hold_charges": boolean,
    "outage": boolean,
    "in_use_status": status_choice(400, 409, 422),
    "hang_rate": rate,
    "transient_rate": rate,
    "transient_statuses": http_error_statuses,
    "lost_rate": rate,
    "drip_rate": rate,
    "malformed_rate": rate,
    "hang_ms": non_negative_int,
    "drip_interval_ms": non_negative_int,
}
REQUEST_KINDS = ("charge", "lookup", "refund")
HOLD_LIMIT_S = 30.0
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
    outcome TEXT NOT NULL,
    idempotency_key TEXT  -- for this key only (NULL: the next new charge of any key)
);
-- Every request about a key, as the provider saw it arrive: what a test counts and times.
CREATE TABLE IF NOT EXISTS request_log (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('charge', 'lookup', 'refund')),
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS request_log_by_key ON request_log (idempotency_key, position);
-- Answers forced on the next requests of a kind, about one key or any: a status, answered
-- doing nothing (a provider answering 401, 429, ...), or a mode (web.ANSWER_MODES).
CREATE TABLE IF NOT EXISTS forced_answers (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('charge', 'lookup', 'refund')),
    idempotency_key TEXT,
    status INTEGER,
    mode TEXT CHECK (mode IN ('hang', 'drip', 'malformed', 'lost')),
    CHECK ((status IS NULL) <> (mode IS NULL))
);
-- Charges being processed: another request with the same key meanwhile is answered
-- in_use_status (409 by default), as real providers do (Stripe: "another request with this
-- idempotency key is in progress").
CREATE TABLE IF NOT EXISTS in_flight (
    idempotency_key TEXT PRIMARY KEY,
    since REAL NOT NULL
);
"""
# An in-flight mark older than this was left by a process that died mid-request.
IN_FLIGHT_EXPIRY_S = 60.0


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
    """The head of the scripted queue for this key if any, else of the queue for any key
    (consumed), else the seeded roll."""
    row = conn.execute(
        "SELECT position, outcome FROM script"
        " WHERE idempotency_key = ? OR idempotency_key IS NULL"
        " ORDER BY idempotency_key IS NULL, position LIMIT 1",
        (key,),
    ).fetchone()
    if row is None:
        return roll_outcome(config, key, n)
    conn.execute("DELETE FROM script WHERE position = ?", (row[0],))
    return scripted_outcome(row[1])


def log_request(conn: sqlite3.Connection, key: str, kind: str) -> None:
    """Record a request's arrival; in the caller's write transaction, or its own."""
    sql = "INSERT INTO request_log (idempotency_key, kind, at) VALUES (?, ?, ?)"
    if conn.in_transaction:
        conn.execute(sql, (key, kind, time.time()))
    else:
        with write_transaction(conn):
            conn.execute(sql, (key, kind, time.time()))


def arrival(conn: sqlite3.Connection, key: str, kind: str) -> tuple[dict[str, Any], Fault | None]:
    """Log the request and decide its fault, in one write transaction: 503 in an outage, else
    the answer forced on its kind (consumed), else the seeded rates' roll. Returns the config
    it was decided by.

    The roll is a pure function of (seed, kind, key, earlier requests of that kind with that
    key), so a plan replays the same answers whichever process serves which request.
    """
    with write_transaction(conn):
        (earlier,) = conn.execute(
            "SELECT COUNT(*) FROM request_log WHERE idempotency_key = ? AND kind = ?", (key, kind)
        ).fetchone()
        log_request(conn, key, kind)
        config = read_config(conn)[0]
        if config["outage"]:
            outage = ApiError(503, "service_unavailable", "simulated outage of the payment service")
            return config, Fault(error=outage)
        rng = random.Random(f"{config['seed']}:{kind}:{key}:{earlier}")
        row = conn.execute(
            "SELECT position, status, mode FROM forced_answers"
            " WHERE kind = ? AND (idempotency_key = ? OR idempotency_key IS NULL)"
            " ORDER BY idempotency_key IS NULL, position LIMIT 1",
            (kind, key),
        ).fetchone()
        if row is None:
            return config, roll_fault(rng, config, f"a {kind}")
        conn.execute("DELETE FROM forced_answers WHERE position = ?", (row[0],))
    return config, forced_fault(row[1], row[2], rng, f"a {kind}")


def hold_while_asked(conn: sqlite3.Connection) -> None:
    """Keep a charge being processed while the config says hold_charges."""
    deadline = time.monotonic() + HOLD_LIMIT_S
    while read_config(conn)[0]["hold_charges"] and time.monotonic() < deadline:
        time.sleep(0.02)


def in_flight_begin(conn: sqlite3.Connection, key: str) -> bool:
    """Mark a new charge request with `key` as being processed; False when another request
    with that key is being processed already (its answer is not given yet)."""
    now = time.time()
    with write_transaction(conn):
        conn.execute(
            "DELETE FROM in_flight WHERE idempotency_key = ? AND since < ?",
            (key, now - IN_FLIGHT_EXPIRY_S),
        )
        inserted = conn.execute(
            "INSERT INTO in_flight (idempotency_key, since) VALUES (?, ?)"
            " ON CONFLICT (idempotency_key) DO NOTHING",
            (key, now),
        ).rowcount
    return inserted == 1


def in_flight_end(conn: sqlite3.Connection, key: str) -> None:
    with write_transaction(conn):
        conn.execute("DELETE FROM in_flight WHERE idempotency_key = ?", (key,))


def charge_attempt(
    conn: sqlite3.Connection, config: dict[str, Any], req: ChargeRequest
) -> ChargeResult:
    """Process a charge request that got past its arrival.

    With no latency a charge is made in one write transaction, so requests with one key queue
    on the write lock and the later ones find the charge; with latency (or held), a charge is
    being processed that long, and another request with its key meanwhile is answered
    in_use_status, as a real provider does.
    """
    if config["latency_ms"] == 0 and not config["hold_charges"]:
        return charge_create(conn, config, req)
    if not in_flight_begin(conn, req.idempotency_key):
        in_use = ApiError(
            config["in_use_status"],
            "idempotency_key_in_use",
            "another request with this idempotency_key is being processed",
        )
        return ChargeResult(error=in_use)
    try:
        simulate_latency(config["latency_ms"])
        hold_while_asked(conn)
        return charge_create(conn, config, req)
    finally:
        in_flight_end(conn, req.idempotency_key)


def charge_create(
    conn: sqlite3.Connection, config: dict[str, Any], req: ChargeRequest
) -> ChargeResult:
    """Count the attempt and answer the stored charge or make a new one, in one transaction
    (the request was logged on arrival).

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


def charge_found(conn: sqlite3.Connection, key: str) -> dict[str, Any]:
    charge = fetch_charge(conn, key)
    if charge is None:
        raise ApiError(404, "not_found", f"no charge with idempotency_key {key!r}")
    return charge


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


def request_log(conn: sqlite3.Connection, key: str | None) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT idempotency_key, kind, at FROM request_log"
        + (" WHERE idempotency_key = ?" if key is not None else "")
        + " ORDER BY position",
        (key,) if key is not None else (),
    ).fetchall()
    return [{"idempotency_key": k, "kind": kind, "at": at} for k, kind, at in rows]


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
        conn = get_db()
        current, fault = arrival(conn, req.idempotency_key, "charge")
        refuse_or_hang(fault, current)
        result = charge_attempt(conn, current, req)
        # A timeout outcome and a lost answer are one delay, not two.
        if result.late and (fault is None or fault.mode != "lost"):
            time.sleep(current["timeout_delay_ms"] / 1000)
        if result.error is not None:
            response = error_response(result.error)
        else:
            response = json_response(result.charge, 201 if result.created else 200)
        return shaped(response, fault, current)

    @app.get("/charges/<key>")
    def get_charge(key: str) -> Response:
        simulate_latency(config()["latency_ms"])
        current, fault = arrival(get_db(), key, "lookup")
        refuse_or_hang(fault, current)
        return shaped(answered(lambda: json_response(charge_found(get_db(), key))), fault, current)

    @app.post("/charges/<key>/refund")
    def refund_charge(key: str) -> Response:
        simulate_latency(config()["latency_ms"])
        current, fault = arrival(get_db(), key, "refund")
        refuse_or_hang(fault, current)
        return shaped(answered(lambda: json_response(charge_refund(get_db(), key))), fault, current)

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
        data = json_body()
        reject_unknown_fields(data, {"outcomes", "key"})
        outcomes = data.get("outcomes")
        if not isinstance(outcomes, list) or any(o not in SCRIPTABLE_OUTCOMES for o in outcomes):
            raise bad_request(f"outcomes must be a list of {', '.join(SCRIPTABLE_OUTCOMES)}")
        key = data.get("key")
        if key is not None:
            key = path_key(key, "key")
        conn = get_db()
        with write_transaction(conn):
            conn.executemany(
                "INSERT INTO script (outcome, idempotency_key) VALUES (?, ?)",
                [(o, key) for o in outcomes],
            )
            pending = [o for (o,) in conn.execute("SELECT outcome FROM script ORDER BY position")]
        return json_response({"pending": pending})

    @app.post("/_control/fail_next")
    def push_forced_answers() -> Response:
        """{"kind": "charge" | "lookup" | "refund", "status": 400-599 | "mode": ..., "times": n,
        "key"?}: the next n requests of that kind (about that idempotency key, if given) are
        answered with that status (nothing done: a charge stores nothing), or in that mode:
        hang (nothing done, nothing answered for hang_ms, then 503), drip (done, the answer
        a byte every drip_interval_ms), malformed (done, a 200 whose body the client cannot
        use), lost (done, answered after timeout_delay_ms)."""
        data = json_body()
        reject_unknown_fields(data, {"kind", "status", "mode", "times", "key"})
        key = data.get("key")
        if key is not None:
            key = path_key(key, "key")
        kind = data.get("kind")
        if kind not in REQUEST_KINDS:
            raise bad_request("kind must be charge, lookup or refund")
        status, mode = parse_forced_answer(data)
        times = positive_int("times", data.get("times", 1))
        conn = get_db()
        with write_transaction(conn):
            conn.executemany(
                "INSERT INTO forced_answers (kind, idempotency_key, status, mode)"
                " VALUES (?, ?, ?, ?)",
                [(kind, key, status, mode)] * times,
            )
        return json_response(
            {"kind": kind, "status": status, "mode": mode, "times": times, "key": key}
        )

    @app.post("/_control/reset")
    def reset() -> Response:
        conn = get_db()
        with write_transaction(conn):
            for table in (
                "charges",
                "charge_requests",
                "script",
                "request_log",
                "in_flight",
                "forced_answers",
            ):
                conn.execute(f"DELETE FROM {table}")
            restored = reset_config(conn)
        return json_response({"config": restored})

    @app.get("/_control/stats")
    def stats() -> Response:
        return json_response(charge_stats(get_db(), request.args.get("key")))

    @app.get("/_control/charges/<key>")
    def peek_charge(key: str) -> Response:
        """The charge as stored, for tests: unlike GET /charges/<key>, not a request the
        provider counts."""
        return json_response(charge_found(get_db(), key))

    @app.get("/_control/requests")
    def requests_seen() -> Response:
        """Every request as it arrived (key, kind: charge, lookup or refund; time), in order."""
        return json_response({"results": request_log(get_db(), request.args.get("key"))})

    return app
