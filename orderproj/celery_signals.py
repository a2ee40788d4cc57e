"""Celery signal handlers, connected in every process that loads the Celery app (workers and
beat; in web processes they only fire for eager tasks):

- logging: Celery leaves logging to us (setup_logging has a receiver), so workers and beat
  log in the project's format (LOG_FORMAT), like web;
- a task whose signature takes `order_id` binds that order to every line logged while it
  runs, Celery's own "Task ... succeeded" line included (orderproj.logs);
- database connections are recycled around every task as Django does around a request
  (close_old_connections: CONN_MAX_AGE, broken connections), not closed after each one
  (settings.CELERY_DB_REUSE_MAX);
- every finished task run counts towards the task metrics (orderproj.ops_state), kept in
  the broker's Redis so /metrics sees all workers' runs whichever process serves it.
"""

import inspect
import logging
import time
from functools import lru_cache
from logging.config import dictConfig

from celery import signals
from django.db import close_old_connections

from orderproj.logs import bind_task_context, clear_task_context
from orderproj.ops_state import task_metrics_record

_started: dict[str, float] = {}


@signals.setup_logging.connect
def configure_logging(loglevel: int | str | None = None, **kwargs) -> None:
    from django.conf import settings

    dictConfig(settings.LOGGING)
    if loglevel:  # `celery worker --loglevel ...` is the process's own, explicit choice
        logging.getLogger().setLevel(loglevel)


@lru_cache(maxsize=256)
def _signature(task_name: str, run) -> inspect.Signature | None:
    try:
        signature = inspect.signature(run)
    except (TypeError, ValueError):
        return None
    return signature if "order_id" in signature.parameters else None


def order_id_of(task, args, kwargs) -> int | None:
    """The `order_id` argument of a task call, if the task takes one."""
    signature = _signature(task.name, task.run)
    if signature is None:
        return None
    try:
        value = signature.bind_partial(*(args or ()), **(kwargs or {})).arguments.get("order_id")
    except TypeError:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@signals.task_prerun.connect
def task_started(task_id: str, task, args=None, kwargs=None, **_) -> None:
    if not task.request.is_eager:  # an eager task runs inside its caller's request
        close_old_connections()
    _started[task_id] = time.monotonic()
    bind_task_context(
        task_id=task_id, task_name=task.name, order_id=order_id_of(task, args, kwargs)
    )


@signals.task_postrun.connect
def task_finished(task_id: str, task, state: str | None = None, **_) -> None:
    eager = task.request.is_eager
    started = _started.pop(task_id, None)
    try:
        if started is not None:
            task_metrics_record(
                task=task.name,
                state=(state or "unknown").lower(),
                duration=time.monotonic() - started,
            )
    finally:
        clear_task_context()
        if not eager:
            close_old_connections()
