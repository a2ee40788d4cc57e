"""Real collaborators for tests: the simulators served over HTTP, and Celery workers run as
separate processes against the test database and the real broker."""

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import requests
from werkzeug.serving import make_server

from tests.processes import wait_for

if TYPE_CHECKING:
    from kombu.transport.redis import Channel as RedisChannel

ROOT = Path(__file__).resolve().parent.parent


class SimulatorServer:
    """The simulators on one threaded werkzeug server on a free port."""

    def __init__(self, var_dir: Path):
        from simulators.wsgi import build_application

        self.server = make_server("127.0.0.1", 0, build_application(str(var_dir)), threaded=True)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def payment_url(self) -> str:
        return f"{self.base_url}/sim/payments"

    @property
    def warehouse_url(self) -> str:
        return f"{self.base_url}/sim/warehouse"

    @property
    def receiver_url(self) -> str:
        return f"{self.base_url}/sim/receiver"

    def stop(self) -> None:
        self.server.shutdown()


@dataclass
class SimulatorControl:
    """A simulator's control API, common to all: reset, and behaviour settings."""

    url: str
    session: requests.Session = field(default_factory=requests.Session)

    def reset(self) -> None:
        self.session.post(f"{self.url}/_control/reset", timeout=5).raise_for_status()

    def configure(self, **config) -> None:
        self.session.put(f"{self.url}/_control/config", json=config, timeout=5).raise_for_status()


def forced(status: int | None, mode: str | None) -> dict:
    """The answer part of a fail_next body."""
    if (status is None) == (mode is None):
        raise ValueError("give exactly one of status and mode")
    return {"status": status} if status is not None else {"mode": mode}


@dataclass
class PaymentSim(SimulatorControl):
    """Test-side handle on the payment simulator's control API."""

    def script(self, *outcomes: str, key: str | None = None) -> None:
        """The next new charges' outcomes (of `key` only, if given): capture, decline,
        error (503, nothing stored), timeout (captured, answered too late)."""
        body = {"outcomes": list(outcomes), **({"key": key} if key else {})}
        self.session.post(f"{self.url}/_control/script", json=body, timeout=5).raise_for_status()

    def fail_next(
        self,
        kind: str,
        status: int | None = None,
        times: int = 1,
        key: str | None = None,
        mode: str | None = None,
    ) -> None:
        """The next `times` requests of `kind` (charge, lookup, refund), about `key` if given,
        are answered `status` (nothing done: a charge stores nothing), or in `mode`: hang
        (nothing done, nothing answered for hang_ms), drip (done, the answer a byte every
        drip_interval_ms), malformed (done, a 200 the client cannot use), lost (done,
        answered after timeout_delay_ms). Exactly one of status and mode."""
        body = {
            "kind": kind,
            "times": times,
            **forced(status, mode),
            **({"key": key} if key else {}),
        }
        self.session.post(f"{self.url}/_control/fail_next", json=body, timeout=5).raise_for_status()

    def stats(self, key: str | None = None) -> dict:
        params = {"key": key} if key else {}
        response = self.session.get(f"{self.url}/_control/stats", params=params, timeout=5)
        response.raise_for_status()
        return response.json()

    def charge(self, key: str) -> dict | None:
        """The charge as the provider holds it (not counted as a request of ours)."""
        response = self.session.get(f"{self.url}/_control/charges/{key}", timeout=5)
        return None if response.status_code == 404 else response.json()

    def requests(self, key: str | None = None, kind: str | None = None) -> list[dict]:
        """Every request the provider received (of one key, of one kind: charge, lookup or
        refund), in arrival order, each with its arrival time `at` (epoch seconds)."""
        params = {"key": key} if key else {}
        response = self.session.get(f"{self.url}/_control/requests", params=params, timeout=5)
        response.raise_for_status()
        found = response.json()["results"]
        return [r for r in found if kind is None or r["kind"] == kind]


@dataclass
class WarehouseSim(SimulatorControl):
    """Test-side handle on the warehouse simulator's control API."""

    def set_stock(self, levels: dict[str, int]) -> None:
        items: list[dict[str, Any]] = [
            {"sku": sku, "on_hand": on_hand} for sku, on_hand in levels.items()
        ]
        self.session.put(
            f"{self.url}/_control/stock", json={"items": items}, timeout=60
        ).raise_for_status()

    def stock(self) -> dict[str, tuple[int, int]]:
        """sku -> (on_hand, version), every page."""
        levels, after = {}, None
        while True:
            params = {"limit": 10_000, **({"after": after} if after else {})}
            page = self.session.get(f"{self.url}/stock", params=params, timeout=30).json()
            levels.update({r["sku"]: (r["on_hand"], r["version"]) for r in page["results"]})
            after = page["next_after"]
            if not after:
                return levels

    def tick(self, **params) -> dict:
        response = self.session.post(f"{self.url}/_control/tick", json=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def shipments(self) -> dict:
        return self.session.get(f"{self.url}/_control/shipments", timeout=5).json()

    def fail_next(
        self,
        kind: str,
        status: int | None = None,
        times: int = 1,
        order_id: str | int | None = None,
        mode: str | None = None,
    ) -> None:
        """The next `times` requests of `kind` (stock, shipment, batch, cancel, get_shipment,
        list_shipments), about `order_id` if given (shipment, cancel, get_shipment only), are
        answered `status` (nothing done), or in `mode`: hang (nothing done, nothing answered
        for hang_ms), drip (done, the answer a byte every drip_interval_ms), malformed (done,
        a 200 the client cannot use; for a batch: not an object, results not a list, a result
        too few, or one result not an object), lost (done, answered after timeout_delay_ms).
        Exactly one of status and mode."""
        body = {"kind": kind, "times": times, **forced(status, mode)}
        if order_id is not None:
            body["order_id"] = str(order_id)
        self.session.post(f"{self.url}/_control/fail_next", json=body, timeout=5).raise_for_status()

    def serve_overrides(self, on_hand: dict[str, object]) -> None:
        """From now on the snapshot serves these values as the SKUs' on_hand (a faulty
        warehouse: negative, too large, not a number)."""
        items: list[dict[str, Any]] = [
            {"sku": sku, "on_hand": value} for sku, value in on_hand.items()
        ]
        self.session.put(
            f"{self.url}/_control/served_overrides", json={"items": items}, timeout=10
        ).raise_for_status()


@dataclass
class ReceiverSim(SimulatorControl):
    """Test-side handle on the webhook receiver simulator's control API."""

    def hook_url(self, name: str = "orders") -> str:
        """Where to deliver webhooks: each delivery is recorded under the hook `name`."""
        return f"{self.url}/hooks/{name}"

    def script(self, *outcomes: str) -> None:
        """The next deliveries' answers, in order: ok (200), fail (fail_status), timeout
        (200 after timeout_delay_ms, too late), slow (200 after slow_ms), drip (200 at once,
        its body one byte every drip_interval_ms), hang (nothing answered for hang_ms, then a
        503 nobody waits for)."""
        body = {"outcomes": list(outcomes)}
        self.session.post(f"{self.url}/_control/script", json=body, timeout=5).raise_for_status()

    def pin(self, name: str, outcome: str | None) -> None:
        """Every delivery to hook `name` gets `outcome` (as in `script`) from now on; None:
        decided as for any hook again."""
        body = {"outcome": outcome}
        self.session.put(
            f"{self.url}/_control/hooks/{name}", json=body, timeout=5
        ).raise_for_status()

    def received(self, after_id: int | None = None, webhook_id: str | None = None) -> list[dict]:
        """Every delivery recorded after `after_id` (of one webhook id, if given), oldest
        first, every page: id, hook, headers, body, received_at, status, outcome, verified."""
        records: list[dict] = []
        params: dict[str, str | int] = {
            "limit": 1000,
            **({"webhook_id": webhook_id} if webhook_id else {}),
        }
        while True:
            if after_id is not None:
                params["after_id"] = after_id
            response = self.session.get(f"{self.url}/_control/received", params=params, timeout=5)
            response.raise_for_status()
            page = response.json()
            records.extend(page["results"])
            after_id = page["next_after_id"]
            if after_id is None:
                return records

    def stats(self) -> dict:
        """received, by_status, by_outcome, webhook_ids (distinct), verified {true, false},
        script_pending."""
        response = self.session.get(f"{self.url}/_control/stats", timeout=5)
        response.raise_for_status()
        return response.json()


def test_database_url(settings_dict: dict) -> str:
    user = settings_dict.get("USER") or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


class ChildProcess:
    """`celery -A orderproj <args>` started by a test in its own session, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], *, log_path: Path):
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "orderproj", *args],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL of its whole group if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


class WorkerProcess(ChildProcess):
    """`celery worker` as a child process, with the environment the test chose."""

    def __init__(
        self, env: dict[str, str], *, concurrency: int = 4, name: str = "test", log_path: Path
    ):
        self.name = f"{name}-{os.getpid()}@%h"
        super().__init__(
            [
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(concurrency),
                "--pool",
                "prefork",
                "--hostname",
                self.name,
                "--without-gossip",
                "--without-mingle",
            ],
            env,
            log_path=log_path,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            return b"ready." in self.log_path.read_bytes()

        wait_for(ready, timeout=timeout, interval=0.2, message="the Celery worker to be ready")


def broker_idle() -> bool:
    """No message waiting in any queue and none delivered but unacknowledged (with acks_late
    a message stays in kombu's `unacked` hash until its task has finished)."""
    from orderproj.celery import app

    with app.connection_for_write() as conn:
        client = cast("RedisChannel", conn.default_channel).client  # the broker is Redis
        return queue_length() == 0 and client.hlen("unacked") == 0


class BeatProcess(ChildProcess):
    """`celery beat` with the database scheduler, as a child process."""

    def __init__(self, env: dict[str, str], *, log_path: Path):
        super().__init__(["beat", "--loglevel", "INFO", "--pidfile", ""], env, log_path=log_path)


def forget_unacked(task: str) -> int:
    """Drop the messages of `task` a SIGKILLed worker left unacknowledged (kombu would
    restore them only after its visibility timeout, an hour), so that later tests find the
    broker idle. Returns how many."""
    from orderproj.celery import app

    with app.connection_for_write() as conn:
        client = cast("RedisChannel", conn.default_channel).client  # the broker is Redis
        dropped = 0
        for tag, raw in client.hgetall("unacked").items():
            message = json.loads(raw)[0]  # kombu keeps [message, exchange, routing key]
            if isinstance(message, str | bytes):
                message = json.loads(message)
            if message["headers"]["task"] == task:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
                dropped += 1
        return dropped


def queued_tasks(queue: str | None = None) -> list[tuple[str, datetime | None]]:
    """The tasks waiting in one queue, or in all of them, as the broker holds them: each
    one's name, and when it is due if it was published with a countdown."""
    from orderproj.celery import app

    names = [queue] if queue else [q.name for q in app.conf.task_queues]
    with app.connection_for_write() as conn:
        client = cast("RedisChannel", conn.default_channel).client  # the broker is Redis
        headers = [
            json.loads(raw)["headers"] for name in names for raw in client.lrange(name, 0, -1)
        ]
    return [
        (h["task"], datetime.fromisoformat(h["eta"]) if h.get("eta") else None) for h in headers
    ]


def queue_length(queue: str | None = None) -> int:
    """Messages waiting in one queue, or in all of them."""
    from orderproj.celery import app

    names = [queue] if queue else [q.name for q in app.conf.task_queues]
    with app.connection_for_write() as conn:
        client = cast("RedisChannel", conn.default_channel).client  # the broker is Redis
        return sum(client.llen(name) for name in names)
