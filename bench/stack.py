"""The production stack for the order benchmark, as child processes: a private Redis (unless a
broker URL is given), the simulators and the web app under gunicorn (gthread), and Celery
worker(s) with a configurable pool. Everything is started in its own session and stopped by
process group at the end, also on Ctrl-C and on errors (the Stack is a context manager).

No celery-beat: the benchmark needs neither the warehouse sync nor the reconciler (the
reconciler would only act on orders stuck for ORDER_STUCK_AFTER_SECONDS, 300 s).

It also reads the CPU time each part of the stack used (/proc), so a run can say how the
machine's two cores were shared between web, workers, PostgreSQL, Redis and the simulators.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import redis
import requests
from celery import Celery

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, *, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
        except (requests.RequestException, OSError, ValueError, redis.RedisError):
            result = None  # not answering yet
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def descendants(pid: int) -> list[int]:
    """pid and every process below it (children of any of its threads), recursively."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(child) for child in children.read_text().split()]
    return found


def cpu_seconds(pid: int) -> float | None:
    """user + system CPU seconds of one process (all its threads), None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine (all cores), since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


class Proc:
    """One child process (and its descendants) in a session of its own, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")

    def pids(self) -> list[int]:
        return descendants(self.proc.pid) if self.proc.poll() is None else []

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Whatever is left in the group (a pool child that outlived its parent).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


@dataclass
class StackConfig:
    database_url: str
    broker_url: str  # with private_redis, a redis-server of ours is started on its port
    private_redis: bool = True
    web_port: int = field(default_factory=free_port)
    sim_port: int = field(default_factory=free_port)
    web_workers: int = 2
    web_threads: int = 4
    access_log: bool = True  # as in the Procfile
    workers: int = 1  # celery worker processes (each with its own pool)
    worker_pool: str = "prefork"  # prefork | threads | solo
    worker_concurrency: int = 16
    sim_workers: int = 2
    sim_threads: int = 32
    log_level: str = "INFO"
    count_queries: bool = False  # bench.querycount in web and workers
    # One more worker process for the webhooks queue alone (one pool process), the others
    # taking every other queue: docker-compose.yml's split.
    webhook_worker: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def payment_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}/sim/payments"

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}/sim/receiver"

    @property
    def warehouse_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}/sim/warehouse"

    def env(self, var_dir: str) -> dict[str, str]:
        """The environment of every process of the stack (and of the driver itself)."""
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "orderproj.settings",
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.broker_url,
            "SECRET_KEY": "bench-only-secret",
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "ORDER_CREATE_THROTTLE_RATE": "",
            "SERVE_SIMULATORS": "false",
            "PAYMENT_API_URL": self.payment_url,
            "WAREHOUSE_API_URL": self.warehouse_url,
            "PORT": str(self.web_port),
            "VAR_DIR": var_dir,
            # A flash sale must fail its surplus at once, not wait out the stock retries.
            "ORDER_STOCK_RETRY_MAX": "0",
            "LOG_LEVEL": self.log_level,
            "BENCH_COUNT_QUERIES": "1" if self.count_queries else "0",
            **self.extra_env,
        }


class Stack:
    """Start with `with Stack(config, log_dir) as stack:`; everything stops on exit."""

    def __init__(self, config: StackConfig, log_dir: Path):
        self.config = config
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.var_dir = Path(tempfile.mkdtemp(prefix="bench-orders-"))
        self.procs: dict[str, Proc] = {}
        self.workers: list[Proc] = []

    def env(self) -> dict[str, str]:
        return self.config.env(str(self.var_dir))

    # --- start / stop ---------------------------------------------------------------------

    def __enter__(self) -> "Stack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        c, env = self.config, self.env()
        if c.private_redis:
            self.procs["redis"] = Proc(
                "redis",
                [
                    shutil.which("redis-server") or "redis-server",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(urlsplit(c.broker_url).port),
                    "--dir",
                    str(self.var_dir),
                    "--save",
                    "",
                    # As recommended for the broker in production: AOF on, nothing evicted.
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "everysec",
                    "--maxmemory-policy",
                    "noeviction",
                ],
                env,
                self.log_dir,
            )
        self.procs["simulators"] = Proc(
            "simulators",
            [
                str(BIN / "gunicorn"),
                "simulators.wsgi:application",
                "--bind",
                f"127.0.0.1:{c.sim_port}",
                "--workers",
                str(c.sim_workers),
                "--worker-class",
                "gthread",
                "--threads",
                str(c.sim_threads),
            ],
            {**env, "LOG_ROLE": "simulators"},
            self.log_dir,
        )
        self._wait_redis()
        web_app = "bench.wsgi:application" if c.count_queries else "orderproj.wsgi:application"
        self.procs["web"] = Proc(
            "web",
            [
                str(BIN / "gunicorn"),
                web_app,
                "--bind",
                f"127.0.0.1:{c.web_port}",
                "--workers",
                str(c.web_workers),
                "--worker-class",
                "gthread",
                "--threads",
                str(c.web_threads),
                "--graceful-timeout",
                "10",
                *(["--access-logfile", "-"] if c.access_log else []),
            ],
            env,
            self.log_dir,
        )
        include = "bench.tasks,bench.querycount" if c.count_queries else "bench.tasks"
        queues = ["orders", "fulfilment", "sync", "maintenance"]  # bench.noop: "orders"
        for n in range(c.workers + c.webhook_worker):
            webhooks = n == c.workers
            worker = Proc(
                f"worker{n}",
                [
                    str(BIN / "celery"),
                    "-A",
                    "orderproj",
                    "worker",
                    "--loglevel",
                    c.log_level,
                    "--pool",
                    c.worker_pool,
                    "--concurrency",
                    "1" if webhooks else str(c.worker_concurrency),
                    "--hostname",
                    f"bench{n}@%h",
                    "--include",
                    include,
                    *(
                        ["-Q", "webhooks" if webhooks else ",".join(queues)]
                        if c.webhook_worker
                        else []
                    ),
                ],
                env,
                self.log_dir,
            )
            self.procs[worker.name] = worker
            self.workers.append(worker)
        self._wait_ready()

    def _wait_redis(self) -> None:
        client = redis.Redis.from_url(self.config.broker_url, socket_timeout=1)
        wait_until(lambda: self._alive() and client.ping(), timeout=20, what="Redis")

    def _alive(self) -> bool:
        for proc in self.procs.values():
            proc.check_alive()
        return True

    def _wait_ready(self) -> None:
        def sims_up() -> bool:
            return self._alive() and all(
                requests.get(f"{url}/health", timeout=1).ok
                for url in (self.config.payment_url, self.config.warehouse_url)
            )

        def web_up() -> bool:
            # Any answer from Django proves the app loaded; /api/health/ also says 503 for
            # the beat we do not run, so only its database and broker checks are read.
            body = requests.get(f"{self.config.web_url}/api/health/", timeout=5).json()
            checks = body.get("checks", body)
            return all(checks.get(name, {}).get("ok", True) for name in ("database", "broker"))

        control = Celery(broker=self.config.broker_url, set_as_current=False).control
        expected = {f"bench{n}@{socket.gethostname()}" for n in range(len(self.workers))}

        def workers_up() -> bool:
            # A ping through the broker, whatever the log level (WARNING hides "ready.").
            self._alive()
            answered = {name for reply in control.ping(timeout=1.0) for name in reply}
            return expected <= answered

        wait_until(sims_up, timeout=60, what="the simulators")
        wait_until(web_up, timeout=60, what="the web app")
        wait_until(workers_up, timeout=90, what="the Celery worker(s)")

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            self.procs[name].stop()
        self.procs.clear()
        shutil.rmtree(self.var_dir, ignore_errors=True)


class CpuTracker:
    """CPU seconds used by each part of the stack (and the machine) from its creation on.
    Call `sample()` now and then while the phase runs: a process that ends (a PostgreSQL
    backend replaced after CONN_MAX_AGE) keeps the time last seen; new ones count from zero."""

    def __init__(self, stack: Stack, pg_backend_pids: Callable[[], list[int]]):
        self.stack, self.pg_backend_pids = stack, pg_backend_pids
        self.start = self._read()
        self.last = dict(self.start)
        self.machine_start = machine_busy_seconds()
        self.started_at = time.monotonic()

    def _read(self) -> dict[tuple[str, int], float]:
        values = {}
        for name, proc in self.stack.procs.items():
            group = "worker" if name.startswith("worker") else name
            for pid in proc.pids():
                if (seconds := cpu_seconds(pid)) is not None:
                    values[(group, pid)] = seconds
        for pid in self.pg_backend_pids():
            if (seconds := cpu_seconds(pid)) is not None:
                values[("postgres", pid)] = seconds
        return values

    def sample(self) -> None:
        self.last.update(self._read())

    def result(self) -> dict[str, float]:
        self.sample()
        groups: dict[str, float] = {}
        for (group, pid), seconds in self.last.items():
            groups[group] = groups.get(group, 0.0) + seconds - self.start.get((group, pid), 0.0)
        groups = {g: round(s, 3) for g, s in groups.items()}
        groups["machine"] = round(machine_busy_seconds() - self.machine_start, 3)
        groups["wall"] = round(time.monotonic() - self.started_at, 3)
        return groups
