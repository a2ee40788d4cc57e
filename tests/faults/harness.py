"""The fault-injection harness: a private Redis the test may stop, restart and pause; real
Celery workers and beats on it; and the figures every scenario reports."""

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis
from celery import Celery

from tests.live import BeatProcess, WorkerProcess
from tests.processes import free_port, wait_for


class PrivateRedis:
    """A redis-server of the test's own, so stopping or pausing it touches nothing else."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.answers, timeout=10, message="the private Redis to answer")

    def answers(self) -> bool:
        try:
            return redis.Redis(port=self.port, socket_timeout=0.5).ping()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def pause(self, seconds: float, *, mode: str = "ALL") -> None:
        """CLIENT PAUSE: Redis accepts connections and commands but answers none meanwhile
        (mode ALL), or none that writes (mode WRITE: publishing a task is a write), like a
        hung broker."""
        redis.Redis(port=self.port).execute_command("CLIENT", "PAUSE", int(seconds * 1000), mode)

    def unpause(self) -> None:
        """End a CLIENT PAUSE ... WRITE now (under ALL, this command would wait too)."""
        redis.Redis(port=self.port).execute_command("CLIENT", "UNPAUSE")


@dataclass
class Figures:
    scenario: str
    orders: int = 0
    faults_injected: int = 0
    lost: int = 0
    oversold: int = 0
    double_charged: int = 0
    audit_violations: list[str] = field(default_factory=list)
    notes: dict = field(default_factory=dict)

    def report(self) -> None:
        line = json.dumps(asdict(self))
        print(f"\nFAULT-FIGURES {line}")
        out = Path(os.environ.get("FAULT_FIGURES_DIR", "test-artifacts")) / "fault-figures.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as f:
            f.write(line + "\n")

    def assert_clean(self) -> None:
        """Report the figures (always), then require zero lost, oversold, double charged."""
        self.report()
        assert (self.lost, self.oversold, self.double_charged) == (0, 0, 0), self
        assert self.audit_violations == [], self.audit_violations


class Stack:
    """Workers and beats on the private Redis and the test database."""

    def __init__(self, base_env: dict[str, str], broker: PrivateRedis, workdir: Path, **env):
        self.env = {
            **base_env,
            "CELERY_BROKER_URL": broker.url,
            **{k: str(v) for k, v in env.items()},
        }
        self.broker = broker
        self.workdir = workdir
        self.workers: list[WorkerProcess] = []
        self.beats: list[BeatProcess] = []
        # Our queues (settings.CELERY_TASK_QUEUES), so that purge() empties every one of them.
        self.control = Celery(set_as_current=False)
        self.control.config_from_object("django.conf:settings", namespace="CELERY")
        # Settings keeps what is set on it (its __setattr__); the stubs see a read-only property.
        self.control.conf.broker_url = broker.url  # type: ignore[misc]

    def start_worker(self, concurrency: int = 4) -> WorkerProcess:
        n = len(self.workers)
        worker = WorkerProcess(
            self.env,
            concurrency=concurrency,
            name=f"fault{n}",
            log_path=self.workdir / f"worker{n}.log",
        )
        worker.wait_ready()
        self.workers.append(worker)
        return worker

    def start_beat(self) -> BeatProcess:
        beat = BeatProcess(self.env, log_path=self.workdir / f"beat{len(self.beats)}.log")
        self.beats.append(beat)
        return beat

    def pool_children(self) -> list[int]:
        """Pids of every worker's pool processes (the ones that run tasks)."""
        pids = []
        for worker in self.workers:
            path = Path(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children")
            if path.exists():
                pids += [int(pid) for pid in path.read_text().split()]
        return pids

    def kill_worker(self, worker: WorkerProcess) -> None:
        """SIGKILL the whole worker: main process and pool children, no goodbye."""
        os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(timeout=10)
        worker.log.close()
        self.workers.remove(worker)

    def stop(self) -> None:
        for process in [*self.beats, *self.workers]:
            process.stop()


def set_schedule(name: str, *, every: int | None = None, enabled: bool = True) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    task = PeriodicTask.objects.get(name=name)
    if every is not None:
        task.interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
    task.enabled = enabled
    task.save()


def settle(order_ids: list[int], *, timeout: float) -> list[int]:
    """Wait until every order is final; returns the ids still not final at the deadline."""
    from orders.models import FINAL_STATUSES, Order

    deadline = time.monotonic() + timeout
    while True:
        open_ids = list(
            Order.objects.filter(pk__in=order_ids)
            .exclude(status__in=FINAL_STATUSES)
            .values_list("id", flat=True)
        )
        if not open_ids or time.monotonic() > deadline:
            return open_ids
        time.sleep(0.3)


def figures_for(
    scenario: str,
    order_ids: list[int],
    *,
    faults: int,
    payment_sim,
    settle_within: float,
) -> Figures:
    """Wait up to `settle_within` seconds for every order to end (settle), then count what
    matters from the outside: orders lost, units oversold, charges doubled."""
    open_ids = settle(order_ids, timeout=settle_within)
    posted = len(order_ids)
    from django.db.models import Count

    from inventory.models import StockLevel
    from orders.audit import audit
    from orders.models import Order

    found = Order.objects.filter(pk__in=order_ids).count()
    result = audit(with_provider=True)
    figures = Figures(
        scenario=scenario,
        orders=posted,
        faults_injected=faults,
        lost=(posted - found) + len(open_ids),
        oversold=StockLevel.objects.filter(available__lt=0).count()
        + sum(1 for v in result.violations if v.startswith("product ")),
        double_charged=kept_captures(order_ids, payment_sim),
        audit_violations=result.violations,
        notes={
            "statuses": dict(
                Order.objects.filter(pk__in=order_ids)
                .values_list("status")
                .annotate(n=Count("id"))
                .order_by()
            )
        },
    )
    return figures


def kept_captures(order_ids: list[int], payment_sim) -> int:
    """Captures the provider keeps that nobody paid for, counted key by key: every captured
    key must be the current payment of an order that is confirmed or fulfilled. (A kept
    capture and a paid order without one can never cancel out.)"""
    from orders.models import Order, OrderStatus

    paid_keys = set(
        Order.objects.filter(
            pk__in=order_ids, status__in=[OrderStatus.CONFIRMED, OrderStatus.FULFILLED]
        ).values_list("payment__idempotency_key", flat=True)
    )
    captured = {
        key for key, seen in payment_sim.stats()["by_key"].items() if seen["status"] == "captured"
    }
    return len(captured - paid_keys)
