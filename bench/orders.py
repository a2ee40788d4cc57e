"""Benchmark: end-to-end order throughput and latency on the production stack.

    make bench          # or: .venv/bin/python -m bench.orders [--scenarios spread,hot] ...
    make bench-quick    # small, invariants only (CI): exits non-zero on a violation

Starts PostgreSQL-backed gunicorn (web), Celery worker(s), the simulators (their own gunicorn)
and a private Redis (bench/stack.py), seeds each scenario, drives orders over HTTP from a
separate load process (bench/load.py) and waits for every order to end. In the same run it
measures the machine's reference limits on the same services (bench/reference.py).

Scenarios: `spread` (1,000 SKUs, ample stock), `hot` (one SKU, stock for half the orders: a
flash sale; the workers run with ORDER_STOCK_RETRY_MAX=0 so the surplus fails at once),
`slow-payments` (the payment service answers after 100 ms). Each has a peak phase (closed
loop: the end-to-end figures) and a phase at half the peak's end-to-end rate (open loop: the
API's p99 at half the peak load). A full run first counts every database query of a few
hundred orders per scenario in a separate pass (bench/querycount.py), so the counting costs
nothing in the timed pass.

Writes `<out-dir>/latest.json` (plus a timestamped copy) and `<out-dir>/<scenario>.png`, and
prints a summary with the issue's targets. Uses its own database (BENCH_DATABASE_URL, default
`orderproj_bench_orders`, or `orderproj_bench_quick` for --quick, on DATABASE_URL's server),
created and migrated if needed, and its own Redis (a private redis-server; --broker-url to use
another). Exit status: 1 when an invariant is violated (an order lost, a unit oversold, a
charge doubled, an API error, an audit violation); with --strict also 2 when a target is missed.
"""

import argparse
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import requests

from bench.report import cpu_capacity
from bench.stack import ROOT, CpuTracker, Stack, StackConfig, free_port

DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/orderproj"


def database_url(quick: bool) -> str:
    if url := os.environ.get("BENCH_DATABASE_URL"):
        return url
    server = os.environ.get("DATABASE_URL") or DEFAULT_SERVER
    name = "orderproj_bench_quick" if quick else "orderproj_bench_orders"
    return server.rsplit("/", 1)[0] + "/" + name


def ensure_database(url: str, *, fresh: bool) -> None:
    name = url.rsplit("/", 1)[1].split("?")[0]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="small runs, invariants only (CI)")
    add("--scenarios", default="spread,hot,slow-payments")
    add("--orders", type=int, help="orders per scenario's peak phase (default 2000; quick 40)")
    add("--concurrency", type=int, default=16, help="HTTP clients in the peak phase")
    add(
        "--half-peak-seconds",
        type=float,
        default=15.0,
        help="length of the half-peak phase (0: skip it)",
    )
    add(
        "--query-pass-orders",
        type=int,
        default=200,
        help="orders per scenario in the query-counting pass (full runs; 0: none)",
    )
    add("--noop-tasks", type=int, help="no-op tasks for the Celery rate (default 5000)")
    add("--pgbench-seconds", type=int, help="default 10 (quick: 1)")
    add("--pgbench-clients", type=int, default=8)
    add("--web-workers", type=int, default=2)
    add("--web-threads", type=int, default=4)
    add("--no-access-log", action="store_true")
    add("--workers", type=int, default=1, help="Celery worker processes")
    add("--worker-pool", default="prefork", choices=["prefork", "threads", "solo"])
    add(
        "--worker-concurrency",
        type=int,
        default=os.cpu_count(),
        help="processes per worker (default one per core, as docker-compose.yml runs it)",
    )
    add("--sim-workers", type=int, default=2)
    add("--sim-threads", type=int, default=32)
    add("--log-level", default="INFO")
    add(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the stack's processes (repeatable)",
    )
    add(
        "--tuning",
        default="",
        metavar="NAMES",
        help="what-if settings for every process: bench/tuned_settings.py (e.g. no_health_checks)",
    )
    add("--broker-url", help="use this Redis instead of a private redis-server")
    add("--fresh-db", action="store_true", help="drop and re-create the bench database")
    add("--final-timeout", type=float, help="seconds to wait for a phase's orders to end")
    add("--stall-timeout", type=float, default=60.0)
    add("--profile", action="store_true", help="py-spy on web, workers, simulators (spread)")
    add("--label", default="", help="free text recorded in the JSON")
    add("--strict", action="store_true", help="exit 2 when a target is missed")
    add("--out-dir", help="default bench-results (quick: bench-results/quick)")
    add("--quiet", action="store_true", help="no progress bars")
    add(
        "--webhook",
        action="store_true",
        help="one webhook subscription to every order event, at the receiver simulator, "
        "delivered by a worker of its own (as docker-compose.yml runs it); reports the "
        "delivery lag (docs/webhooks.md)",
    )
    add(
        "--webhook-subscriptions",
        type=int,
        default=1,
        help="with --webhook: this many subscriptions to every order event, each its own hook",
    )
    add(
        "--webhook-hanging",
        type=int,
        default=0,
        help="with --webhook: of those, this many at a hook that never answers (the lag "
        "figures are the others'; their events are not waited for)",
    )
    args = parser.parse_args(argv)
    if args.profile:
        from bench.profiling import Profiler

        if not Profiler.available():
            parser.error("--profile needs py-spy (make venv-dev installs it)")
    quick = args.quick
    args.orders = args.orders or (40 if quick else 2000)
    args.noop_tasks = args.noop_tasks or (200 if quick else 5000)
    args.pgbench_seconds = args.pgbench_seconds or (1 if quick else 10)
    args.final_timeout = args.final_timeout or (60.0 if quick else 600.0)
    if quick:
        args.half_peak_seconds = 0
    args.out_dir = Path(args.out_dir or ROOT / "bench-results" / ("quick" if quick else ""))
    return args


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


class Driver:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.db_url = database_url(args.quick)
        private = not args.broker_url
        broker = args.broker_url or f"redis://127.0.0.1:{free_port()}/0"
        extra = dict(item.split("=", 1) for item in args.env)
        if args.tuning:
            extra.update(DJANGO_SETTINGS_MODULE="bench.tuned_settings", BENCH_TUNING=args.tuning)
        self.base = dict(
            database_url=self.db_url,
            broker_url=broker,
            private_redis=private,
            web_port=free_port(),
            sim_port=free_port(),
            web_workers=args.web_workers,
            web_threads=args.web_threads,
            access_log=not args.no_access_log,
            workers=args.workers,
            worker_pool=args.worker_pool,
            worker_concurrency=args.worker_concurrency,
            sim_workers=args.sim_workers,
            sim_threads=args.sim_threads,
            log_level=args.log_level,
            extra_env=extra,
            webhook_worker=args.webhook,
        )
        self.stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.log_dir = args.out_dir / "logs" / self.stamp
        self.var_dir = tempfile.mkdtemp(prefix="bench-driver-")

    def config(self, *, count_queries: bool) -> StackConfig:
        return StackConfig(**self.base, count_queries=count_queries)

    def setup_django(self) -> None:
        os.environ.update(self.config(count_queries=False).env(self.var_dir))
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from rest_framework.authtoken.models import Token

        call_command("migrate", verbosity=0)
        user, _ = get_user_model().objects.get_or_create(username="bench-customer")
        self.token = Token.objects.get_or_create(user=user)[0].key
        import redis

        self.redis = redis.Redis.from_url(self.base["broker_url"], socket_timeout=5)

    # --- one scenario ------------------------------------------------------------------------

    def pg_backend_pids(self) -> list[int]:
        from django.db import InterfaceError, OperationalError, connection

        try:
            return self._pg_backend_pids(connection)
        except (OperationalError, InterfaceError):
            connection.close()
            return []  # PostgreSQL restarting: these samples are lost

    def _pg_backend_pids(self, connection) -> list[int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            )
            return [pid for (pid,) in cursor.fetchall()]

    def pg_stats(self) -> dict[str, int]:
        """PostgreSQL's own counters for the bench database: connections opened (sessions),
        transactions, rows written. They include the driver's polling (a few per second)."""
        from django.db import connection

        columns = [
            "sessions",
            "xact_commit",
            "xact_rollback",
            "tup_inserted",
            "tup_updated",
            "tup_deleted",
            "tup_fetched",
        ]
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")  # our own pending counts
            time.sleep(0.05)
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                f"SELECT {', '.join(columns)} FROM pg_stat_database"
                " WHERE datname = current_database()"
            )
            return dict(zip(columns, cursor.fetchone(), strict=True))

    def broker_idle(self) -> None:
        deadline = time.monotonic() + 30
        queues = ("orders", "fulfilment", "sync", "maintenance")
        while sum(self.redis.llen(q) for q in queues) or self.redis.hlen("unacked"):
            if time.monotonic() > deadline:
                print(
                    "warning: the broker still holds messages from an earlier phase",
                    file=sys.stderr,
                )
                return
            time.sleep(0.2)

    def load(
        self,
        stack: Stack,
        *,
        orders: int,
        products: str,
        label: str,
        rate: float | None = None,
        concurrency: int | None = None,
        tracker: CpuTracker | None = None,
    ) -> dict:
        out = Path(self.var_dir) / f"load-{label.replace(' ', '-')}.json"
        argv = [
            sys.executable,
            "-m",
            "bench.load",
            "--base-url",
            stack.config.web_url,
            "--token",
            self.token,
            "--orders",
            str(orders),
            "--product-ids",
            products,
            "--concurrency",
            str(concurrency or self.args.concurrency),
            "--label",
            label,
            "--seed",
            f"{label}-{self.stamp}",
            "--out",
            str(out),
            *(["--rate", f"{rate:.3f}"] if rate else []),
            *(["--quiet"] if self.args.quiet else []),
        ]
        proc = subprocess.Popen(argv, cwd=ROOT)
        try:
            while proc.poll() is None:
                if tracker:
                    tracker.sample()
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"the load process failed with {proc.returncode}")
        return json.loads(out.read_text())

    def scenario(
        self,
        stack: Stack,
        name: str,
        *,
        orders: int,
        half_peak: bool,
        counting: bool,
        profile_dir: Path | None = None,
    ) -> dict:
        from bench import querycount
        from bench.scenarios import (
            SCENARIOS,
            accepted_ids,
            invariants,
            phase_figures,
            postmaster_started,
            resilient,
            seed,
            series,
            wait_final,
            webhook_figures,
            webhook_subscribe,
            webhooks_pending,
        )

        scenario = SCENARIOS[name]
        a = self.args
        on_hand = scenario.on_hand(orders)
        pg_started = resilient(postmaster_started)
        products = resilient(
            seed,
            scenario,
            on_hand=on_hand,
            payment_url=stack.config.payment_url,
            warehouse_url=stack.config.warehouse_url,
        )
        if a.webhook:
            resilient(
                webhook_subscribe,
                stack.config.receiver_url,
                count=a.webhook_subscriptions,
                hanging=a.webhook_hanging,
            )
            # every process sees it before the first order (WEBHOOK_TYPES_CACHE_SECONDS)
            time.sleep(5.5)
        self.broker_idle()
        if counting:
            querycount.reset_counts(self.redis)
        profiler = None
        if profile_dir is not None:
            from bench.profiling import Profiler

            profiler = Profiler(stack, profile_dir)
            profiler.start()
        tracker = CpuTracker(stack, self.pg_backend_pids)
        driver_cpu = _own_cpu()
        pg_before = resilient(self.pg_stats)
        peak_load = self.load(
            stack, orders=orders, products=products, label=f"{name} peak", tracker=tracker
        )
        open_ids = wait_final(
            accepted_ids(peak_load),
            timeout=a.final_timeout,
            stall=a.stall_timeout,
            label=f"{name} final",
            quiet=a.quiet,
            on_tick=tracker.sample,
        )
        if a.webhook:  # their delivery's CPU counts too
            self.wait_webhooks(webhooks_pending, on_tick=tracker.sample)
        cpu = tracker.result()
        time.sleep(1.1)  # backends flush their statistics at most once a second
        pg_after = resilient(self.pg_stats)
        cpu["driver"] = round(_own_cpu() - driver_cpu, 3)
        cpu["load"] = peak_load["cpu_seconds"]
        profile = profiler.stop() if profiler else None
        peak = resilient(phase_figures, peak_load)

        entry = {"name": name, **{k: v for k, v in peak.items() if not k.startswith("_")}}
        records, finals, all_ids = peak_load["records"], peak["_final"], list(peak["_ids"])
        entry["half_peak_starts_at_s"] = None
        entry["api_create_p99_ms_at_half_peak"] = None
        entry["to_final_p99_ms_at_half_peak"] = None
        if half_peak and peak["e2e_orders_per_s"]:
            rate = peak["e2e_orders_per_s"] / 2
            half_load = self.load(
                stack,
                orders=max(20, round(rate * a.half_peak_seconds)),
                products=products,
                label=f"{name} half-peak",
                rate=rate,
                concurrency=2 * a.concurrency,
            )
            open_ids += wait_final(
                accepted_ids(half_load),
                timeout=a.final_timeout,
                stall=a.stall_timeout,
                label=f"{name} half-peak final",
                quiet=a.quiet,
            )
            half = resilient(phase_figures, half_load)
            entry["half_peak_starts_at_s"] = round(half["_first"] - peak["_first"], 1)
            entry["api_create_p99_ms_at_half_peak"] = half["api_create_p99_ms"]
            entry["to_final_p99_ms_at_half_peak"] = half["to_final_p99_ms"]
            entry["half_peak"] = {k: v for k, v in half.items() if not k.startswith("_")}
            records, finals = records + half_load["records"], finals + half["_final"]
            all_ids += half["_ids"]
        if a.webhook:  # the half-peak phase's events too
            self.wait_webhooks(webhooks_pending)
        stats = requests.get(f"{stack.config.payment_url}/_control/stats", timeout=60).json()
        entry.update(
            resilient(
                invariants,
                order_ids=all_ids,
                open_ids=open_ids,
                on_hand=on_hand,
                payment_stats=stats,
            )
        )
        entry["api_errors"] = peak["api_errors"] + entry.get("half_peak", {}).get("api_errors", 0)
        entry["cpu_seconds"] = cpu
        if resilient(postmaster_started) != pg_started:
            entry["disturbed"] = (
                "PostgreSQL was restarted during this scenario (by another process)"
            )
            print(f"warning: {name}: {entry['disturbed']}", file=sys.stderr)
        if entry["orders"]:
            entry["cpu_ms_per_order"] = {
                g: round(1000 * s / entry["orders"], 2) for g, s in cpu.items() if g != "wall"
            }
            entry["cpu_capacity_orders_per_s"] = cpu_capacity(
                entry["cpu_ms_per_order"], os.cpu_count() or 1
            )
        if entry["orders"]:
            entry["pg_stats_per_order"] = {
                k: round((pg_after[k] - pg_before[k]) / entry["orders"], 2) for k in pg_after
            }
        entry["series"] = series(records, finals, peak["_first"])
        if a.webhook:
            starts = entry["half_peak_starts_at_s"]
            half_from = peak["_first"] + starts if starts is not None else None
            entry["webhooks"] = resilient(webhook_figures, half_from)
            print(f"{name}: webhooks {entry['webhooks']}")
        if counting:
            entry.update(query_figures(querycount.read_counts(self.redis), entry["orders"]))
        if profile is not None:
            entry["profile"] = profile
        return entry

    def wait_webhooks(self, pending, on_tick=None) -> None:
        """Until every event is delivered, or the final timeout."""
        from bench.scenarios import resilient

        deadline = time.monotonic() + self.args.final_timeout
        while resilient(pending) and time.monotonic() < deadline:
            if on_tick:
                on_tick()
            time.sleep(0.5)

    # --- the whole run -----------------------------------------------------------------------

    def run(self) -> dict:
        from bench.reference import celery_noop_rate, pg_order_txn_rate
        from orderproj.celery import app

        a = self.args
        names = [n.strip() for n in a.scenarios.split(",") if n.strip()]
        result = {
            "mode": "quick" if a.quick else "full",
            "quick": a.quick,
            "label": a.label,
            "tuning": a.tuning,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "stack": {
                k: v
                for k, v in self.base.items()
                if k not in ("database_url", "web_port", "sim_port")
            }
            | {
                "database": self.db_url.rsplit("/", 1)[1],
                "beat": False,
                "ORDER_STOCK_RETRY_MAX": 0,
            },
            "load": {
                "concurrency": a.concurrency,
                "orders": a.orders,
                "half_peak_seconds": a.half_peak_seconds,
            },
            "scenarios": [],
        }
        query_pass: dict[str, dict] = {}
        if not a.quick and a.query_pass_orders > 0:
            print(
                f"query pass: counting every query of {a.query_pass_orders} orders per scenario ..."
            )
            with Stack(self.config(count_queries=True), self.log_dir / "query-pass") as stack:
                for name in names:
                    query_pass[name] = self.scenario(
                        stack, name, orders=a.query_pass_orders, half_peak=False, counting=True
                    )
        print("starting the stack ...")
        with Stack(self.config(count_queries=a.quick), self.log_dir) as stack:
            print(f"reference: {a.noop_tasks} Celery no-op round trips ...")
            tracker = CpuTracker(stack, self.pg_backend_pids)
            noop = celery_noop_rate(app, self.redis, tasks=a.noop_tasks)
            # The warm-up's tasks are in the CPU figures too: a small overestimate.
            noop["cpu_ms_per_task"] = {
                group: round(1000 * seconds / a.noop_tasks, 3)
                for group, seconds in tracker.result().items()
                if group != "wall"
            }
            print(f"reference: pgbench, order-shaped transaction, {a.pgbench_seconds}s x 2 ...")
            pg = _retried(
                pg_order_txn_rate,
                self.db_url,
                seconds=a.pgbench_seconds,
                clients=a.pgbench_clients,
            )
            pg_hot = _retried(
                pg_order_txn_rate,
                self.db_url,
                seconds=a.pgbench_seconds,
                clients=a.pgbench_clients,
                skus=1,
            )
            result.update(
                {
                    "celery_noop_per_s": noop["per_s"],
                    "celery_noop": noop,
                    "pg_order_txn_per_s": pg and pg["txn_per_s"],
                    "pg_order_txn": pg,
                    "pg_order_txn_hot_per_s": pg_hot and pg_hot["txn_per_s"],
                    "pg_order_txn_hot": pg_hot,
                }
            )
            for name in names:
                profile_dir = (
                    a.out_dir / "profile" / self.stamp if a.profile and name == "spread" else None
                )
                entry = self.scenario(
                    stack,
                    name,
                    orders=a.orders,
                    half_peak=a.half_peak_seconds > 0,
                    counting=a.quick,
                    profile_dir=profile_dir,
                )
                if name in query_pass:
                    counted = query_pass[name]
                    entry.update({k: counted[k] for k in QUERY_KEYS if k in counted})
                    entry["query_pass"] = {
                        k: counted[k]
                        for k in (
                            "orders",
                            "lost",
                            "oversold",
                            "double_charged",
                            "audit_violation_count",
                            "statuses",
                        )
                    }
                result["scenarios"].append(entry)
        result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        result["machine"]["loadavg_end"] = os.getloadavg()
        return result


QUERY_KEYS = (
    "queries_per_order",
    "db_transactions_per_order",
    "db_round_trips_per_order",
    "step_cpu_ms_per_order",
    "queries_by_step",
)


def query_figures(counts: dict[str, dict], orders: int) -> dict:
    """Per order and per step, from bench.querycount's counters of the steps of an order's
    life (the API create, the workflow's tasks)."""
    steps = {s: c for s, c in counts.items() if s == "api_create" or s.startswith("orders.")}
    total = sum(c.get("queries", 0) for c in steps.values())
    tx = sum(c.get("tx", 0) for c in steps.values())
    auto = sum(c.get("auto", 0) for c in steps.values())
    per = (lambda n: round(n / orders, 2)) if orders else (lambda n: None)
    cpu = sum(c.get("cpu_ms", 0) for c in steps.values())
    return {
        "step_cpu_ms_per_order": per(cpu),
        "queries_per_order": per(total),
        # Queries as bench.querycount sees them; Django's health check of a reused connection
        # (CONN_HEALTH_CHECKS: a "SELECT 1" bypassing the cursor wrapper) is not among them.
        "db_transactions_per_order": per(tx + auto),
        # BEGIN and COMMIT are round trips of their own (psycopg sends BEGIN separately).
        "db_round_trips_per_order": per(total + 2 * tx),
        "queries_by_step": {
            step: {
                "calls": int(c.get("calls", 0)),
                "queries_per_call": round(c.get("queries", 0) / c["calls"], 2)
                if c.get("calls")
                else None,
                "queries_per_order": per(c.get("queries", 0)),
                "atomic_blocks_per_order": per(c.get("tx", 0)),
                "cpu_ms_per_call": round(c.get("cpu_ms", 0) / c["calls"], 2)
                if c.get("calls")
                else None,
                "db_wall_ms_per_call": round(c.get("db_ms", 0) / c["calls"], 2)
                if c.get("calls")
                else None,
                "autocommit_statements_per_order": per(c.get("auto", 0)),
                "statements_per_order": {sql: per(n) for sql, n in c.get("sql", {}).items()},
            }
            for step, c in sorted(steps.items())
        },
    }


def machine_info() -> dict:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.count("\n")
    return {
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "git_commit": commit,
        "git_modified_files": dirty,
    }


def _retried(call, *args, attempts: int = 3, **kwargs):
    """A reference measurement, tried again if PostgreSQL went away under it (others restart
    it); still failing: recorded as not measured rather than ending the run."""
    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except (RuntimeError, psycopg.Error) as exc:
            again = attempt + 1 < attempts
            print(
                f"warning: {call.__name__} failed ({exc}); "
                f"{'again in 5 s' if again else 'giving up'}",
                file=sys.stderr,
            )
            if again:
                time.sleep(5)
    return None


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def violations(result: dict) -> list[str]:
    found = []
    for s in result["scenarios"]:
        for key in ("lost", "oversold", "double_charged", "api_errors", "audit_violation_count"):
            if s.get(key):
                found.append(f"{s['name']}: {key} = {s[key]}")
        if not s.get("accepted"):
            found.append(f"{s['name']}: no order was accepted")
        hooks = s.get("webhooks")
        if hooks and (hooks["pending"] or hooks["failed"] or hooks["delivered"] < hooks["events"]):
            found.append(f"{s['name']}: webhook events not all delivered: {hooks}")
    return found


def write(result: dict, out_dir: Path, stamp: str) -> Path:
    from bench.report import plot, targets

    out_dir.mkdir(parents=True, exist_ok=True)
    if not result["quick"]:
        result["targets"] = targets(result)
    text = json.dumps(result, indent=1) + "\n"
    latest = out_dir / "latest.json"
    latest.write_text(text)
    if not result["quick"]:
        (out_dir / f"orders-{stamp}.json").write_text(text)
    for scenario in result["scenarios"]:
        plot(scenario, out_dir / f"{scenario['name']}.png")
    return latest


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    ensure_database(database_url(args.quick), fresh=args.fresh_db)
    driver = Driver(args)
    started = time.monotonic()
    try:
        driver.setup_django()
        result = driver.run()
    finally:
        with contextlib.suppress(OSError):
            for leftover in Path(driver.var_dir).glob("*"):
                leftover.unlink()
            Path(driver.var_dir).rmdir()
    result["duration_s"] = round(time.monotonic() - started, 1)
    latest = write(result, args.out_dir, driver.stamp)

    from bench.report import summary

    print()
    print(summary(result))
    print(f"\nwrote {latest} and a PNG per scenario beside it ({result['duration_s']} s)")
    found = violations(result)
    if found:
        print("\nINVARIANTS VIOLATED:\n  " + "\n  ".join(found))
        return 1
    if args.strict and not result["quick"] and any(t["met"] is False for t in result["targets"]):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
