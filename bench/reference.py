"""The machine's reference limits, measured in the same run and on the same services as the
order scenarios:

- `celery_noop_per_s`: round trips of a no-op task (bench.tasks.noop) through the same broker
  and the same worker(s), from the first publish to the last task run;
- `pg_order_txn_per_s`: PostgreSQL's rate for the order-shaped transaction (insert the order,
  lock and update its stock row, update the order, insert a log row), by pgbench with a
  custom script on scratch tables in the bench database, several clients; also on one stock
  row for all (`pg_order_txn_hot_per_s`, the flash sale's ceiling).
"""

import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg

PGBENCH_CANDIDATES = ("/usr/lib/postgresql/15/bin/pgbench", "pgbench")

SCRATCH_SCHEMA = """
DROP TABLE IF EXISTS bench_pg_log, bench_pg_order, bench_pg_stock;
CREATE TABLE bench_pg_stock (
    product_id integer PRIMARY KEY,
    on_hand integer NOT NULL,
    reserved integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE bench_pg_order (
    id bigserial PRIMARY KEY,
    status varchar(16) NOT NULL,
    total numeric(14, 2) NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE bench_pg_log (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES bench_pg_order (id),
    event varchar(48) NOT NULL,
    data jsonb NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX ON bench_pg_log (order_id, id);
INSERT INTO bench_pg_stock (product_id, on_hand)
    SELECT g, 1000000000 FROM generate_series(1, 1000) AS g;
"""

# The order-shaped transaction: what reserving an order does, in one transaction.
ORDER_TXN_SCRIPT = """\\set pid random(1, :skus)
BEGIN;
INSERT INTO bench_pg_order (status, total, created_at, updated_at)
    VALUES ('pending', 10.00, now(), now()) RETURNING id AS order_id \\gset
SELECT on_hand - reserved AS available FROM bench_pg_stock
    WHERE product_id = :pid FOR NO KEY UPDATE;
UPDATE bench_pg_stock SET reserved = reserved + 1, updated_at = now() WHERE product_id = :pid;
UPDATE bench_pg_order SET status = 'reserved', updated_at = now() WHERE id = :order_id;
INSERT INTO bench_pg_log (order_id, event, data, created_at)
    VALUES (:order_id, 'reserved', '{"quantities": {"1": 1}}', now());
COMMIT;
"""


def pgbench_path() -> str | None:
    for candidate in PGBENCH_CANDIDATES:
        if found := shutil.which(candidate):
            return found
    return None


def pg_order_txn_rate(
    database_url: str, *, seconds: int, clients: int, skus: int = 1000
) -> dict | None:
    """pgbench's tps for the order-shaped transaction (None when pgbench is not installed)."""
    pgbench = pgbench_path()
    if pgbench is None:
        return None
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCRATCH_SCHEMA)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(ORDER_TXN_SCRIPT)
    try:
        result = subprocess.run(
            [
                pgbench,
                "--no-vacuum",
                "--file",
                script.name,
                "--client",
                str(clients),
                "--jobs",
                "2",
                "--time",
                str(seconds),
                "--define",
                f"skus={skus}",
                database_url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
    finally:
        Path(script.name).unlink(missing_ok=True)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS bench_pg_log, bench_pg_order, bench_pg_stock")
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", result.stdout)
    if result.returncode != 0 or not match:
        raise RuntimeError(f"pgbench failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    latency = re.search(r"latency average = ([0-9.]+) ms", result.stdout)
    return {
        "txn_per_s": round(float(match.group(1)), 1),
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "clients": clients,
        "seconds": seconds,
        "skus": skus,
        "protocol": "simple (as Django's psycopg 3 backend: no prepared statements)",
    }


def celery_noop_rate(
    app, redis_client, *, tasks: int, publishers: int = 2, timeout: float = 300
) -> dict:
    """Publish `tasks` no-op tasks from `publishers` threads and time them from the first
    publish until the last has run (each run increments a Redis counter)."""
    from bench.tasks import NOOP, NOOP_DONE_KEY

    def publish(count: int) -> None:
        with app.producer_or_acquire() as producer:
            for _ in range(count):
                app.send_task(NOOP, producer=producer)

    def run(count: int) -> tuple[float, float]:
        redis_client.set(NOOP_DONE_KEY, 0)
        shares = [
            count // publishers + (1 if n < count % publishers else 0) for n in range(publishers)
        ]
        threads = [threading.Thread(target=publish, args=(share,)) for share in shares]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        published = time.perf_counter() - started
        deadline = time.monotonic() + timeout
        while int(redis_client.get(NOOP_DONE_KEY) or 0) < count:
            if time.monotonic() > deadline:
                done = int(redis_client.get(NOOP_DONE_KEY) or 0)
                raise RuntimeError(f"only {done} of {count} no-op tasks ran in {timeout:.0f}s")
            time.sleep(0.002)
        return time.perf_counter() - started, published

    run(min(200, tasks))  # warm up: pool processes, connections
    elapsed, published = run(tasks)
    return {
        "tasks": tasks,
        "per_s": round(tasks / elapsed, 1),
        "seconds": round(elapsed, 3),
        "publish_only_per_s": round(tasks / published, 1),
    }
