"""Simulated warehouse: a paged stock snapshot, idempotent shipments, stock drifting over time.

Every change of a SKU bumps its `version`, so a client syncing the snapshot can tell newer
values from older ones whichever order its pages and shipment answers arrive in.

Every business request is decided on arrival, in this order: latency; an outage (503); the
answer forced on its kind (POST /_control/fail_next, consumed); then, for stock, shipment,
batch and cancel requests, error_rate (503) and the fault rates (web.roll_fault: hang, lost,
drip, malformed), seeded per process like ErrorRoll.
"""

import json
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from flask import Flask, Response, request

from simulators.storage import (
    connect,
    init_database,
    install_request_connection,
    read_config,
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
    forced_fault,
    json_body,
    json_response,
    malformed_body,
    non_negative_int,
    non_negative_number,
    parse_forced_answer,
    positive_int,
    rate,
    refuse_or_hang,
    register_error_handlers,
    reject_unknown_fields,
    roll_fault,
    shaped,
    simulate_latency,
    utc_now,
    validate_config,
)

DEFAULT_CONFIG: dict[str, Any] = {
    "error_rate": 0.0,
    "latency_ms": 0,
    "seed": 0,
    "drift_interval_s": 0,
    "restock_rate": 0.05,
    "shrink_rate": 0.01,
    "max_restock": 50,
    # A request size limit: more shipments than this in a batch is a 413 (0: only MAX_BATCH,
    # whose excess is a 400).
    "max_batch": 0,
    # The whole warehouse down: every business request is answered 503.
    "outage": False,
    # Faults of stock, shipment, batch and cancel requests, rolled in this order
    # (web.roll_fault): hang (nothing done, nothing answered for hang_ms), lost (done,
    # answered after timeout_delay_ms), drip (done, the answer a byte every drip_interval_ms),
    # malformed (done, answered 200 with a body the client cannot use).
    "hang_rate": 0.0,
    "lost_rate": 0.0,
    "drip_rate": 0.0,
    "malformed_rate": 0.0,
    "hang_ms": 30_000,
    "drip_interval_ms": 200,
    "timeout_delay_ms": 3000,
}


def batch_limit(name: str, value: Any) -> int:
    limit = non_negative_int(name, value)
    if limit > MAX_BATCH:
        raise bad_request(f"{name} must be an integer from 0 to {MAX_BATCH}")
    return limit


TICK_FIELDS = {
    "restock_rate": rate,
    "shrink_rate": rate,
    "max_restock": positive_int,
    "seed": non_negative_int,
}
CONFIG_FIELDS = {
    **TICK_FIELDS,
    "error_rate": rate,
    "latency_ms": non_negative_int,
    "drift_interval_s": non_negative_number,
    "max_batch": batch_limit,
    "outage": boolean,
    "hang_rate": rate,
    "lost_rate": rate,
    "drip_rate": rate,
    "malformed_rate": rate,
    "hang_ms": non_negative_int,
    "drip_interval_ms": non_negative_int,
    "timeout_delay_ms": non_negative_int,
}
# The kinds of business request, as fail_next names them; those about one order; those that
# error_rate and the fault rates apply to.
REQUEST_KINDS = ("stock", "shipment", "batch", "cancel", "get_shipment", "list_shipments")
ORDER_KINDS = ("shipment", "cancel", "get_shipment")
ROLLED_KINDS = ("stock", "shipment", "batch", "cancel")
DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10_000
MAX_STOCK_ITEMS = 200_000
MAX_SHIPMENT_LINES = 1000
MAX_BATCH = 500  # shipments per POST /shipments/batch
MAX_SHRINK = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS skus (
    sku TEXT PRIMARY KEY,
    on_hand INTEGER NOT NULL CHECK (on_hand >= 0),
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shipments (
    order_id TEXT PRIMARY KEY,
    lines_key TEXT NOT NULL,
    answer TEXT NOT NULL
);
-- Orders cancelled before they shipped: a push of one is refused from then on.
CREATE TABLE IF NOT EXISTS cancelled_orders (
    order_id TEXT PRIMARY KEY,
    cancelled_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tick_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    ticks INTEGER NOT NULL,
    last_drift_at REAL
);
INSERT OR IGNORE INTO tick_state (id, ticks, last_drift_at) VALUES (1, 0, NULL);
-- Answers forced on the next requests of a kind, about one order or any: a status, answered
-- doing nothing, or a mode (web.ANSWER_MODES).
CREATE TABLE IF NOT EXISTS forced_answers (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (
        kind IN ('stock', 'shipment', 'batch', 'cancel', 'get_shipment', 'list_shipments')
    ),
    order_id TEXT,  -- for this order only (NULL: the next request of the kind)
    status INTEGER,
    mode TEXT CHECK (mode IN ('hang', 'drip', 'malformed', 'lost')),
    CHECK ((status IS NULL) <> (mode IS NULL))
);
-- A warehouse's own bugs, for tests: the snapshot serves this JSON value as a SKU's on_hand
-- (a negative count, one past any integer column, a string) instead of the stored one.
CREATE TABLE IF NOT EXISTS served_overrides (
    sku TEXT PRIMARY KEY,
    on_hand TEXT NOT NULL
) WITHOUT ROWID;
"""

Line = tuple[str, int]


class ErrorRoll:
    """Seeded error and fault injection, deterministic per process.

    Each process keeps its own generators and re-seeds them whenever the stored config's
    generation moves (any control change, by whichever process), so a test that sets the
    seed gets a reproducible sequence of failures from the process it talks to. Faults are
    drawn from a sequence of their own, so that error_rate fails the same requests as before
    there were faults.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._rng = random.Random()
        self._faults = random.Random()

    def _follow(self, config: dict[str, Any], generation: int) -> None:
        if generation != self._generation:
            self._rng.seed(config["seed"])
            self._faults.seed(f"{config['seed']}:faults")
            self._generation = generation

    def fails(self, config: dict[str, Any], generation: int) -> bool:
        with self._lock:
            self._follow(config, generation)
            return self._rng.random() < config["error_rate"]

    def request_rng(self, config: dict[str, Any], generation: int) -> random.Random:
        """A generator of one request's own, the next of the fault sequence: whatever the
        request draws from it, the next request's draws are the same."""
        with self._lock:
            self._follow(config, generation)
            return random.Random(self._faults.getrandbits(64))


def control_order_id(value: Any) -> str:
    """An order id as fail_next takes it: as a shipment's, an integer or a string."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not 1 <= len(value) <= 128 or "/" in value:
        raise bad_request("order_id must be an integer or a string of 1 to 128 characters, no '/'")
    return value


def forced_answer(
    conn: sqlite3.Connection, kind: str, order_id: str | None, rng: random.Random
) -> Fault | None:
    """The answer forced on the next request of `kind` (about `order_id`: one forced for that
    order first), consumed. A plain read first, so that the usual case takes no write lock."""
    pending = conn.execute("SELECT 1 FROM forced_answers WHERE kind = ? LIMIT 1", (kind,))
    if pending.fetchone() is None:
        return None
    with write_transaction(conn):
        row = conn.execute(
            "SELECT position, status, mode FROM forced_answers"
            " WHERE kind = ? AND (order_id = ? OR order_id IS NULL)"
            " ORDER BY order_id IS NULL, position LIMIT 1",
            (kind, order_id),
        ).fetchone()
        if row is None:
            return None
        conn.execute("DELETE FROM forced_answers WHERE position = ?", (row[0],))
    return forced_fault(row[1], row[2], rng, f"a {kind} request")


def malformed_batch(real: bytes, rng: random.Random) -> bytes:
    """A batch answer the client cannot use, the seed's pick: not an object, results not a
    list, one result too few, or one result (the seed's pick) not an object."""
    results = json.loads(real).get("results")
    if not isinstance(results, list) or not results:  # the real answer is an error
        return malformed_body(real, rng)
    variant = rng.randrange(4)
    index = rng.randrange(len(results))
    broken: list[Any] = [
        [],
        {"results": "x"},
        {"results": results[:-1]},
        {"results": [*results[:index], "shipped", *results[index + 1 :]]},
    ]
    return json.dumps(broken[variant]).encode()


def parse_page(args: Mapping[str, str]) -> tuple[str, int]:
    after = args.get("after", "")
    try:
        limit = int(args.get("limit", DEFAULT_PAGE_SIZE))
    except ValueError:
        raise bad_request("limit must be an integer") from None
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise bad_request(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    return after, limit


def stock_page(conn: sqlite3.Connection, after: str, limit: int) -> dict[str, Any]:
    """One keyset page: a range scan of the primary key, one row more to know if it is last."""
    as_of = utc_now()
    rows = conn.execute(
        "SELECT s.sku, s.on_hand, s.version, o.on_hand FROM skus AS s"
        " LEFT JOIN served_overrides AS o USING (sku)"
        " WHERE s.sku > ? ORDER BY s.sku LIMIT ?",
        (after, limit + 1),
    ).fetchall()
    return {
        "results": [
            {
                "sku": sku,
                "on_hand": on_hand if override is None else json.loads(override),
                "version": version,
            }
            for sku, on_hand, version, override in rows[:limit]
        ],
        "next_after": rows[limit - 1][0] if len(rows) > limit else None,
        "as_of": as_of,
    }


def parse_shipment(data: dict[str, Any]) -> tuple[str, list[Line]]:
    reject_unknown_fields(data, {"order_id", "lines"})
    order_id = data.get("order_id")
    if isinstance(order_id, int) and not isinstance(order_id, bool):
        order_id = str(order_id)
    if not isinstance(order_id, str) or not 1 <= len(order_id) <= 128 or "/" in order_id:
        raise bad_request("order_id must be an integer or a string of 1 to 128 characters, no '/'")
    lines = data.get("lines")
    if not isinstance(lines, list) or not 1 <= len(lines) <= MAX_SHIPMENT_LINES:
        raise bad_request(f"lines must be a list of 1 to {MAX_SHIPMENT_LINES} lines")
    parsed = []
    for line in lines:
        if not isinstance(line, dict) or set(line) != {"sku", "quantity"}:
            raise bad_request('each line must be {"sku": ..., "quantity": ...}')
        sku, quantity = line["sku"], line["quantity"]
        if not isinstance(sku, str) or not sku:
            raise bad_request("sku must be a non-empty string")
        parsed.append((sku, positive_int("quantity", quantity)))
    return order_id, parsed


def shipment_create(
    conn: sqlite3.Connection, order_id: str, lines: list[Line]
) -> tuple[int, dict[str, Any]]:
    """Take the units off on_hand and store the answer, all or nothing, once per order id.

    Under the write lock the order id is checked before any stock is read, so concurrent
    pushes of one order ship it once; a repeat answers the stored answer with 200.
    """
    with write_transaction(conn):
        return _ship(conn, order_id, lines)


def shipments_create(
    conn: sqlite3.Connection, shipments: list[tuple[str, list[Line]]]
) -> list[dict[str, Any]]:
    """Many shipments in one write transaction, each as shipment_create would make it (or
    refuse it), independently of the others: a result per shipment, in order."""
    results = []
    with write_transaction(conn):
        for order_id, lines in shipments:
            try:
                _, answer = _ship(conn, order_id, lines)
            except ApiError as error:
                body: dict[str, Any] = {"code": error.code, "message": error.message}
                if error.details:
                    body["details"] = error.details
                results.append({"order_id": order_id, "status": "refused", "error": body})
            else:
                results.append({"order_id": order_id, "status": "shipped", "shipment": answer})
    return results


def _ship(conn: sqlite3.Connection, order_id: str, lines: list[Line]) -> tuple[int, dict]:
    """One shipment, in the caller's write transaction; refusals raise before any write."""
    lines_key = json.dumps(sorted(lines))
    if conn.execute("SELECT 1 FROM cancelled_orders WHERE order_id = ?", (order_id,)).fetchone():
        raise ApiError(409, "order_cancelled", f"order_id {order_id!r} was cancelled")
    stored = conn.execute(
        "SELECT lines_key, answer FROM shipments WHERE order_id = ?", (order_id,)
    ).fetchone()
    if stored is not None:
        if stored[0] != lines_key:
            message = f"order_id {order_id!r} was shipped with other lines"
            raise ApiError(409, "order_id_reused", message)
        return 200, json.loads(stored[1])
    needed: dict[str, int] = {}
    for sku, quantity in lines:
        needed[sku] = needed.get(sku, 0) + quantity
    stock = {
        sku: (on_hand, version)
        for sku, on_hand, version in conn.execute(
            f"SELECT sku, on_hand, version FROM skus WHERE sku IN ({', '.join('?' * len(needed))})",
            list(needed),
        )
    }
    unknown = sorted(set(needed) - set(stock))
    if unknown:
        raise ApiError(422, "unknown_sku", "unknown SKUs", {"skus": unknown})
    short = [
        {"sku": sku, "requested": quantity, "on_hand": stock[sku][0]}
        for sku, quantity in needed.items()
        if stock[sku][0] < quantity
    ]
    if short:
        raise ApiError(409, "insufficient_stock", "not enough on hand", {"lines": short})
    after = {sku: (stock[sku][0] - quantity, stock[sku][1] + 1) for sku, quantity in needed.items()}
    conn.executemany(
        "UPDATE skus SET on_hand = ?, version = ? WHERE sku = ?",
        [(on_hand, version, sku) for sku, (on_hand, version) in after.items()],
    )
    answer = {
        "shipment_id": f"sh_{uuid.uuid4().hex}",
        "order_id": order_id,
        "lines": [
            {
                "sku": sku,
                "quantity": quantity,
                "on_hand": after[sku][0],
                "version": after[sku][1],
            }
            for sku, quantity in lines
        ],
        "created_at": utc_now(),
    }
    conn.execute(
        "INSERT INTO shipments (order_id, lines_key, answer) VALUES (?, ?, ?)",
        (order_id, lines_key, json.dumps(answer)),
    )
    return 201, answer


def shipment_cancel(conn: sqlite3.Connection, order_id: str) -> dict[str, Any]:
    """Make sure an order is never shipped: recorded as cancelled (a later push is refused
    with 409 order_cancelled), unless it has shipped already (409 already_shipped, with the
    shipment). Under the write lock, so a push and a cancel of one order are decided in one
    order. Safe to repeat."""
    with write_transaction(conn):
        stored = conn.execute(
            "SELECT answer FROM shipments WHERE order_id = ?", (order_id,)
        ).fetchone()
        if stored is not None:
            raise ApiError(
                409,
                "already_shipped",
                f"order_id {order_id!r} has shipped",
                {"shipment": json.loads(stored[0])},
            )
        conn.execute(
            "INSERT INTO cancelled_orders (order_id, cancelled_at) VALUES (?, ?)"
            " ON CONFLICT (order_id) DO NOTHING",
            (order_id, utc_now()),
        )
    return {"order_id": order_id, "status": "cancelled"}


def shipments_page(conn: sqlite3.Connection, after: str, limit: int) -> dict[str, Any]:
    """Every shipment, a keyset page by order_id at a time."""
    rows = conn.execute(
        "SELECT order_id, answer FROM shipments WHERE order_id > ? ORDER BY order_id LIMIT ?",
        (after, limit + 1),
    ).fetchall()
    return {
        "results": [json.loads(answer) for _, answer in rows[:limit]],
        "next_after": rows[limit - 1][0] if len(rows) > limit else None,
    }


def stock_tick(conn: sqlite3.Connection, params: dict[str, Any]) -> dict[str, Any]:
    """Restock and shrink SKUs picked from (seed, tick number); in the caller's transaction.

    One roll per SKU in sku order: below restock_rate it is restocked, in the top
    shrink_rate band it loses a few units (if it has any); where the bands overlap (rates
    adding up to more than 1), restocking wins.
    """
    (tick,) = conn.execute("UPDATE tick_state SET ticks = ticks + 1 RETURNING ticks").fetchone()
    rng = random.Random(f"{params['seed']}:{tick}")
    restock_rate, shrink_rate = params["restock_rate"], params["shrink_rate"]
    restocked: list[tuple[int, str]] = []
    shrunk: list[tuple[int, str]] = []
    for sku, on_hand in conn.execute("SELECT sku, on_hand FROM skus ORDER BY sku").fetchall():
        roll = rng.random()
        if roll < restock_rate:
            restocked.append((on_hand + rng.randint(1, params["max_restock"]), sku))
        elif roll >= 1 - shrink_rate and on_hand > 0:
            shrunk.append((on_hand - rng.randint(1, min(MAX_SHRINK, on_hand)), sku))
    conn.executemany(
        "UPDATE skus SET on_hand = ?, version = version + 1 WHERE sku = ?", restocked + shrunk
    )
    return {
        "tick": tick,
        "changed": len(restocked) + len(shrunk),
        "restocked": len(restocked),
        "shrunk": len(shrunk),
    }


def drift_if_due(conn: sqlite3.Connection, config: dict[str, Any]) -> None:
    """Apply at most one tick per drift_interval_s, whichever process notices it is due.

    The first check is a plain read so that the usual case takes no write lock; the check is
    repeated under the lock so that two processes noticing at once tick only once.
    """
    interval = config["drift_interval_s"]
    if interval <= 0:
        return
    last = conn.execute("SELECT last_drift_at FROM tick_state").fetchone()[0]
    if last is not None and time.time() - last < interval:
        return
    with write_transaction(conn):
        last = conn.execute("SELECT last_drift_at FROM tick_state").fetchone()[0]
        now = time.time()
        if last is not None and now - last < interval:
            return
        if last is not None:  # the first request only starts the clock
            stock_tick(conn, config)
        conn.execute("UPDATE tick_state SET last_drift_at = ?", (now,))


def stock_upsert(conn: sqlite3.Connection, items: Any) -> dict[str, int]:
    """Set on_hand of many SKUs in one transaction; only new or changed SKUs get a version."""
    if not isinstance(items, list) or len(items) > MAX_STOCK_ITEMS:
        raise bad_request(f"items must be a list of at most {MAX_STOCK_ITEMS} items")
    rows = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"sku", "on_hand"}:
            raise bad_request('each item must be {"sku": ..., "on_hand": ...}')
        sku = item["sku"]
        if not isinstance(sku, str) or not 1 <= len(sku) <= 128:
            raise bad_request("sku must be a string of 1 to 128 characters")
        rows.append((sku, non_negative_int("on_hand", item["on_hand"])))
    with write_transaction(conn):
        before = conn.total_changes
        conn.executemany(
            "INSERT INTO skus (sku, on_hand, version) VALUES (?, ?, 1)"
            " ON CONFLICT (sku) DO UPDATE SET on_hand = excluded.on_hand,"
            " version = skus.version + 1 WHERE skus.on_hand != excluded.on_hand",
            rows,
        )
        changed = conn.total_changes - before
    return {"items": len(rows), "changed": changed}


def stock_insert_missing(db_path: str, items: list[dict[str, Any]]) -> int:
    """Add the SKUs this warehouse does not know yet (version 1); known SKUs keep their
    stock, so a restart never undoes shipments, restocks or shrinkage."""
    rows = [(str(item["sku"]), non_negative_int("on_hand", item["on_hand"])) for item in items]
    conn = connect(db_path)
    try:
        with write_transaction(conn):
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO skus (sku, on_hand, version) VALUES (?, ?, 1)"
                " ON CONFLICT (sku) DO NOTHING",
                rows,
            )
            return conn.total_changes - before
    finally:
        conn.close()


def create_app(
    db_path: str, defaults: dict[str, Any] | None = None, initial_stock: str | None = None
) -> Flask:
    """The warehouse app, storing everything in the SQLite file at db_path. `initial_stock`
    names a JSON file of [{"sku", "on_hand"}] whose unknown SKUs are added at start."""
    config_defaults = {**DEFAULT_CONFIG, **validate_config(defaults or {}, CONFIG_FIELDS)}
    init_database(db_path, SCHEMA, config_defaults)
    if initial_stock and Path(initial_stock).is_file():
        stock_insert_missing(db_path, json.loads(Path(initial_stock).read_text()))
    app = Flask(__name__)
    register_error_handlers(app)
    get_db = install_request_connection(app, db_path)
    error_roll = ErrorRoll()

    def serve_business_request(
        kind: str, order_id: str | None = None
    ) -> tuple[dict[str, Any], Fault | None]:
        """Latency, then an outage, a forced answer or a simulated failure, raised (a hang
        first holds the connection); returns the config and the fault left for the view to
        shape the answer with (None: a normal answer)."""
        config, generation = read_config(get_db())
        simulate_latency(config["latency_ms"])
        if config["outage"]:
            raise ApiError(503, "service_unavailable", "simulated outage of the warehouse")
        rng = error_roll.request_rng(config, generation)
        fault = forced_answer(get_db(), kind, order_id, rng)
        if fault is None and kind in ROLLED_KINDS:
            if error_roll.fails(config, generation):
                raise ApiError(503, "service_unavailable", "simulated warehouse failure")
            fault = roll_fault(rng, config, f"a {kind} request")
        refuse_or_hang(fault, config)
        return config, fault

    @app.get("/stock")
    def get_stock() -> Response:
        after, limit = parse_page(request.args)
        config, fault = serve_business_request("stock")
        drift_if_due(get_db(), config)
        return shaped(json_response(stock_page(get_db(), after, limit)), fault, config)

    @app.post("/shipments")
    def create_shipment() -> Response:
        order_id, lines = parse_shipment(json_body())
        config, fault = serve_business_request("shipment", order_id)

        def ship() -> Response:
            status, answer = shipment_create(get_db(), order_id, lines)
            return json_response(answer, status)

        return shaped(answered(ship), fault, config)

    @app.post("/shipments/batch")
    def create_shipments() -> Response:
        """{"shipments": [{"order_id", "lines"}, ...]} (at most MAX_BATCH, or max_batch when
        set: more is a 413): each shipped or refused on its own, as POST /shipments would; the
        results in the same order."""
        data = json_body()
        reject_unknown_fields(data, {"shipments"})
        items = data.get("shipments")
        limit = read_config(get_db())[0]["max_batch"]
        if isinstance(items, list) and limit and len(items) > limit:
            raise ApiError(413, "payload_too_large", f"a batch takes at most {limit} shipments")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            raise bad_request(f"shipments must be a list of 1 to {MAX_BATCH} shipments")
        parsed = [parse_shipment(item) if isinstance(item, dict) else None for item in items]
        if None in parsed:
            raise bad_request("each shipment must be an object")
        config, fault = serve_business_request("batch")
        shipments = cast(list[tuple[str, list[Line]]], parsed)  # None refused above
        response = json_response({"results": shipments_create(get_db(), shipments)})
        return shaped(response, fault, config, malformed=malformed_batch)

    @app.post("/shipments/<order_id>/cancel")
    def cancel_shipment(order_id: str) -> Response:
        config, fault = serve_business_request("cancel", order_id)
        cancel = answered(lambda: json_response(shipment_cancel(get_db(), order_id)))
        return shaped(cancel, fault, config)

    @app.get("/shipments")
    def list_shipments_paged() -> Response:
        after, limit = parse_page(request.args)
        config, fault = serve_business_request("list_shipments")
        return shaped(json_response(shipments_page(get_db(), after, limit)), fault, config)

    @app.get("/shipments/<order_id>")
    def get_shipment(order_id: str) -> Response:
        config, fault = serve_business_request("get_shipment", order_id)
        return shaped(answered(lambda: json_response(shipment_found(order_id))), fault, config)

    def shipment_found(order_id: str) -> dict[str, Any]:
        row = (
            get_db()
            .execute("SELECT answer FROM shipments WHERE order_id = ?", (order_id,))
            .fetchone()
        )
        if row is None:
            raise ApiError(404, "not_found", f"no shipment for order_id {order_id!r}")
        return json.loads(row[0])

    @app.get("/health")
    def health() -> Response:
        return json_response({"status": "ok"})

    @app.get("/_control/config")
    def get_config() -> Response:
        return json_response(read_config(get_db())[0])

    @app.put("/_control/config")
    def put_config() -> Response:
        changes = validate_config(json_body(), CONFIG_FIELDS)
        return json_response(update_config(get_db(), changes))

    @app.put("/_control/stock")
    def put_stock() -> Response:
        data = json_body()
        reject_unknown_fields(data, {"items"})
        return json_response(stock_upsert(get_db(), data.get("items")))

    @app.put("/_control/served_overrides")
    def put_served_overrides() -> Response:
        """{"items": [{"sku": ..., "on_hand": <any JSON>}]}: what the snapshot serves as these
        SKUs' on_hand from now on, whatever is stored (a faulty warehouse, for tests)."""
        data = json_body()
        reject_unknown_fields(data, {"items"})
        items = data.get("items")
        if not isinstance(items, list) or any(
            not isinstance(i, dict) or set(i) != {"sku", "on_hand"} or not isinstance(i["sku"], str)
            for i in items
        ):
            raise bad_request('items must be a list of {"sku": ..., "on_hand": ...}')
        conn = get_db()
        with write_transaction(conn):
            conn.executemany(
                "INSERT INTO served_overrides (sku, on_hand) VALUES (?, ?)"
                " ON CONFLICT (sku) DO UPDATE SET on_hand = excluded.on_hand",
                [(i["sku"], json.dumps(i["on_hand"])) for i in items],
            )
        return json_response({"items": len(items)})

    @app.post("/_control/fail_next")
    def push_forced_answers() -> Response:
        """{"kind": one of REQUEST_KINDS, "status": 400-599 | "mode": ..., "times": n,
        "order_id"? (shipment, cancel, get_shipment only)}: the next n requests of that kind
        (about that order, if given) are answered with that status (nothing done), or in that
        mode: hang (nothing done, nothing answered for hang_ms, then 503), drip (done, the
        answer a byte every drip_interval_ms), malformed (done, a 200 whose body the client
        cannot use), lost (done, answered after timeout_delay_ms)."""
        data = json_body()
        reject_unknown_fields(data, {"kind", "status", "mode", "times", "order_id"})
        kind = data.get("kind")
        if kind not in REQUEST_KINDS:
            raise bad_request(f"kind must be one of {', '.join(REQUEST_KINDS)}")
        order_id = data.get("order_id")
        if order_id is not None:
            if kind not in ORDER_KINDS:
                raise bad_request(f"order_id is only for {', '.join(ORDER_KINDS)}")
            order_id = control_order_id(order_id)
        status, mode = parse_forced_answer(data)
        times = positive_int("times", data.get("times", 1))
        conn = get_db()
        with write_transaction(conn):
            conn.executemany(
                "INSERT INTO forced_answers (kind, order_id, status, mode) VALUES (?, ?, ?, ?)",
                [(kind, order_id, status, mode)] * times,
            )
        return json_response(
            {"kind": kind, "status": status, "mode": mode, "times": times, "order_id": order_id}
        )

    @app.post("/_control/tick")
    def tick() -> Response:
        params = {**read_config(get_db())[0], **validate_config(json_body(), TICK_FIELDS)}
        conn = get_db()
        with write_transaction(conn):
            result = stock_tick(conn, params)
        return json_response(result)

    @app.post("/_control/reset")
    def reset() -> Response:
        conn = get_db()
        with write_transaction(conn):
            conn.execute("DELETE FROM skus")
            conn.execute("DELETE FROM shipments")
            conn.execute("DELETE FROM cancelled_orders")
            conn.execute("DELETE FROM served_overrides")
            conn.execute("DELETE FROM forced_answers")
            conn.execute("UPDATE tick_state SET ticks = 0, last_drift_at = NULL")
            restored = reset_config(conn)
        return json_response({"config": restored})

    @app.get("/_control/shipments")
    def list_shipments() -> Response:
        conn = get_db()
        rows = conn.execute("SELECT answer FROM shipments ORDER BY rowid").fetchall()
        answers = [json.loads(answer) for (answer,) in rows]
        return json_response({"count": len(answers), "results": answers})

    return app
