"""Counting the database queries of every web request and Celery task, per step, into Redis.

Loaded only by the bench's query pass: by the workers with `--include bench.querycount` and by
gunicorn through `bench.wsgi` (and only with BENCH_COUNT_QUERIES=1). Each process counts in
memory while a request or task runs (an execute_wrapper on every connection it opens), then
adds its counts to Redis hashes in one round trip when it ends:

- `bench:q:calls`   step -> requests or task runs
- `bench:q:queries` step -> queries
- `bench:q:tx`      step -> transactions (explicit BEGIN ... COMMIT, i.e. `atomic` blocks)
- `bench:q:auto`    step -> statements run in autocommit (each its own transaction)
- `bench:q:cpu_ms`  step -> CPU time of the thread running the step (time.thread_time: exact
  however busy the machine is, unlike wall times)
- `bench:q:db_ms`   step -> wall time inside the database calls
- `bench:q:sql:<step>` normalized SQL -> count

A step is the task name (orders.process_ready, orders.fulfil_order, ...) or the web route
(api_create for POST /api/orders/). Read them with `read_counts`.
"""

import os
import re
import threading
import time
from functools import lru_cache

import redis
from django.conf import settings

ENABLED = os.environ.get("BENCH_COUNT_QUERIES") == "1"
KEY_PREFIX = "bench:q:"
_local = threading.local()
_PLACEHOLDER_RUNS = re.compile(r"%s(?:\s*,\s*%s)+")
_VALUE_ROWS = re.compile(r"\((?:%s|::|\w|\s|,)+\)(?:\s*,\s*\((?:%s|::|\w|\s|,)+\))+")
_SELECT_LIST = re.compile(r"^SELECT (?:DISTINCT )?.+? FROM ", re.S)
_CASE_WHEN = re.compile(r"\(CASE WHEN .+? END\)(?:::\w+(?: with time zone)?)?", re.S)


def normalize(sql: str) -> str:
    """The statement's shape: select lists, CASE lists (bulk_update), runs of placeholders
    and VALUES rows collapsed, then truncated."""
    sql = _SELECT_LIST.sub("SELECT ... FROM ", sql)
    sql = _CASE_WHEN.sub("(CASE ...)", sql)
    sql = _VALUE_ROWS.sub("(...), ...", _PLACEHOLDER_RUNS.sub("%s, ...", sql))
    return " ".join(sql.split())[:300]


def _count(execute, sql, params, many, context):
    counts = getattr(_local, "counts", None)
    if counts is None:
        return execute(sql, params, many, context)
    raw = context["connection"].connection
    if raw is not None and raw.info.transaction_status == 0:  # IDLE: this starts a tx
        counts["auto" if raw.autocommit else "tx"] += 1
    counts["queries"] += 1
    key = normalize(sql)
    counts["sql"][key] = counts["sql"].get(key, 0) + 1
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        counts["db_ms"] += (time.perf_counter() - started) * 1000


def _on_connection_created(sender, connection, **kwargs) -> None:
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5)


def begin(step: str) -> None:
    _local.step = step
    _local.counts = {"queries": 0, "tx": 0, "auto": 0, "db_ms": 0.0, "sql": {}}
    _local.cpu_started = time.thread_time()


def end() -> None:
    counts, step = getattr(_local, "counts", None), getattr(_local, "step", None)
    _local.counts = None
    if counts is None:
        return
    cpu_ms = (time.thread_time() - _local.cpu_started) * 1000
    pipe = _redis().pipeline(transaction=False)
    pipe.hincrby(f"{KEY_PREFIX}calls", step, 1)
    for name in ("queries", "tx", "auto"):
        pipe.hincrby(f"{KEY_PREFIX}{name}", step, counts[name])
    pipe.hincrbyfloat(f"{KEY_PREFIX}cpu_ms", step, cpu_ms)
    pipe.hincrbyfloat(f"{KEY_PREFIX}db_ms", step, counts["db_ms"])
    for sql, n in counts["sql"].items():
        pipe.hincrby(f"{KEY_PREFIX}sql:{step}", sql, n)
    pipe.execute()


def web_step(environ: dict) -> str:
    method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
    if method == "POST" and path in ("/api/orders/", "/orders/create"):
        return "api_create"
    return f"web {method} {re.sub(r'/[0-9]+/', '/{id}/', path)}"


def read_counts(client: redis.Redis) -> dict[str, dict]:
    """step -> {calls, queries, tx, auto, cpu_ms, db_ms, sql: {statement: count}}."""
    steps: dict[str, dict] = {}
    for name in ("calls", "queries", "tx", "auto", "cpu_ms", "db_ms"):
        for step, value in client.hgetall(f"{KEY_PREFIX}{name}").items():
            steps.setdefault(step.decode(), {})[name] = float(value)
    for step, entry in steps.items():
        sql = client.hgetall(f"{KEY_PREFIX}sql:{step}")
        entry["sql"] = dict(
            sorted(((k.decode(), int(v)) for k, v in sql.items()), key=lambda kv: -kv[1])
        )
    return steps


def reset_counts(client: redis.Redis) -> None:
    keys = list(client.scan_iter(f"{KEY_PREFIX}*"))
    if keys:
        client.delete(*keys)


def install() -> None:
    from django.db.backends.signals import connection_created

    connection_created.connect(_on_connection_created, weak=False)


def _install_worker_hooks() -> None:
    from celery import signals

    install()

    @signals.task_prerun.connect(weak=False)
    def _task_started(task=None, **kwargs) -> None:
        begin(task.name)

    @signals.task_postrun.connect(weak=False)
    def _task_finished(**kwargs) -> None:
        end()


if ENABLED:
    _install_worker_hooks()
