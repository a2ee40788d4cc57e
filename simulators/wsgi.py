"""The simulators in one WSGI application: /sim/payments, /sim/warehouse and /sim/receiver
(a customer's system receiving our webhooks).

Start it standalone with `gunicorn simulators.wsgi:application`, or mount `application`
(or an app from `build_application`) inside another WSGI application. Storage and default
behaviour come from the environment:

- `VAR_DIR` (default `<repo>/var`), `PAYMENT_SIM_DB`, `WAREHOUSE_SIM_DB`, `RECEIVER_SIM_DB`
  (files in VAR_DIR)
- `PAYMENT_SIM_DECLINE_RATE`, `PAYMENT_SIM_ERROR_RATE`, `PAYMENT_SIM_TIMEOUT_RATE`,
  `PAYMENT_SIM_LATENCY_MS`, `PAYMENT_SIM_TIMEOUT_DELAY_MS`, `PAYMENT_SIM_SEED`
- `WAREHOUSE_SIM_ERROR_RATE`, `WAREHOUSE_SIM_LATENCY_MS`, `WAREHOUSE_SIM_SEED`,
  `WAREHOUSE_SIM_DRIFT_INTERVAL_S`, `WAREHOUSE_SIM_INITIAL_STOCK` (a JSON file of
  [{"sku", "on_hand"}]: SKUs the warehouse does not know yet are added at start)
- `RECEIVER_SIM_FAIL_RATE`, `RECEIVER_SIM_LATENCY_MS`, `RECEIVER_SIM_SEED`,
  `RECEIVER_SIM_SECRET` (`whsec_<base64>`: signatures are checked; empty: not)
"""

import json
import os
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

from werkzeug.middleware.dispatcher import DispatcherMiddleware

from simulators import payments, receiver, warehouse

REPO_ROOT = Path(__file__).resolve().parent.parent
# Each setting: the variable it is read from, and how its value is parsed.
EnvSettings = dict[str, tuple[str, Callable[[str], Any]]]
PAYMENT_ENV: EnvSettings = {
    "decline_rate": ("PAYMENT_SIM_DECLINE_RATE", float),
    "error_rate": ("PAYMENT_SIM_ERROR_RATE", float),
    "timeout_rate": ("PAYMENT_SIM_TIMEOUT_RATE", float),
    "latency_ms": ("PAYMENT_SIM_LATENCY_MS", int),
    "timeout_delay_ms": ("PAYMENT_SIM_TIMEOUT_DELAY_MS", int),
    "seed": ("PAYMENT_SIM_SEED", int),
}
WAREHOUSE_ENV: EnvSettings = {
    "error_rate": ("WAREHOUSE_SIM_ERROR_RATE", float),
    "latency_ms": ("WAREHOUSE_SIM_LATENCY_MS", int),
    "seed": ("WAREHOUSE_SIM_SEED", int),
    "drift_interval_s": ("WAREHOUSE_SIM_DRIFT_INTERVAL_S", float),
}
RECEIVER_ENV: EnvSettings = {
    "fail_rate": ("RECEIVER_SIM_FAIL_RATE", float),
    "latency_ms": ("RECEIVER_SIM_LATENCY_MS", int),
    "seed": ("RECEIVER_SIM_SEED", int),
    "secret": ("RECEIVER_SIM_SECRET", receiver.parse_secret),
}


def defaults_from_env(variables: EnvSettings) -> dict[str, Any]:
    """The behaviour settings present in the environment; absent ones keep the app default."""
    defaults = {}
    for field, (name, parse) in variables.items():
        if name in os.environ:
            try:
                defaults[field] = parse(os.environ[name])
            except ValueError as error:  # parse's own words: shows a bad number, never a secret
                raise ValueError(f"{name} is not valid: {error}") from None
    return defaults


def not_found(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Everything outside the mounts."""
    body = json.dumps({"error": {"code": "not_found", "message": "no simulator here"}}).encode()
    start_response(
        "404 NOT FOUND",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def build_application(var_dir: str | None = None) -> DispatcherMiddleware:
    """The combined app; with var_dir, every storage file lives there (the env paths are
    ignored), which is how tests get an isolated set of simulators."""
    if var_dir is None:
        base = Path(os.environ.get("VAR_DIR", REPO_ROOT / "var"))
        payment_db = Path(os.environ.get("PAYMENT_SIM_DB", base / "payment-sim.sqlite3"))
        warehouse_db = Path(os.environ.get("WAREHOUSE_SIM_DB", base / "warehouse-sim.sqlite3"))
        receiver_db = Path(os.environ.get("RECEIVER_SIM_DB", base / "receiver-sim.sqlite3"))
    else:
        payment_db = Path(var_dir) / "payment-sim.sqlite3"
        warehouse_db = Path(var_dir) / "warehouse-sim.sqlite3"
        receiver_db = Path(var_dir) / "receiver-sim.sqlite3"
    for db in (payment_db, warehouse_db, receiver_db):
        db.parent.mkdir(parents=True, exist_ok=True)
    return DispatcherMiddleware(
        not_found,
        {
            "/sim/payments": payments.create_app(str(payment_db), defaults_from_env(PAYMENT_ENV)),
            "/sim/warehouse": warehouse.create_app(
                str(warehouse_db),
                defaults_from_env(WAREHOUSE_ENV),
                initial_stock=os.environ.get("WAREHOUSE_SIM_INITIAL_STOCK"),
            ),
            "/sim/receiver": receiver.create_app(str(receiver_db), defaults_from_env(RECEIVER_ENV)),
        },
    )


@cache
def _default_application() -> DispatcherMiddleware:
    return build_application()


def __getattr__(name: str) -> Any:
    """`application`, built on first access (what gunicorn does) rather than at import, so
    that importing `build_application` (tests) touches no storage file in VAR_DIR."""
    if name == "application":
        return _default_application()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
