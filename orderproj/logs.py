"""Log lines of every process (web, workers, beat, commands), in one of two formats.

LOG_FORMAT=json: one JSON object per line (python-json-logger), for log pipelines.
LOG_FORMAT=plain: one readable line, for people (`make run`).

Every line about an order carries `order_id`: code that logs about an order passes it as
`extra={"order_id": ...}`, and while a Celery task for an order runs, the worker binds it
here (orderproj.celery_signals), so Celery's own lines about the task carry it too. With
`role` (web, worker, beat, ...) and `task_id` that is enough to follow one order's path
across processes: filter every process's lines by `order_id`, sort by `time`.

Pure Python with no Django import: gunicorn's config (gunicorn.conf.py) uses it too.
"""

import logging
import os
import sys
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

LOG_FORMATS = ("json", "plain")

_order_id: ContextVar[int | None] = ContextVar("log_order_id", default=None)
_task: ContextVar[tuple[str, str] | None] = ContextVar("log_task", default=None)


def bind_task_context(*, task_id: str, task_name: str, order_id: int | None) -> None:
    """Lines logged from now on in this context carry the task (and the order, if any)."""
    _task.set((task_id, task_name))
    _order_id.set(order_id)


def clear_task_context() -> None:
    _task.set(None)
    _order_id.set(None)


def process_role(argv: list[str] | None = None) -> str:
    """What this process is, for the `role` field: LOG_ROLE if set, else guessed from argv."""
    if role := os.environ.get("LOG_ROLE"):
        return role
    argv = sys.argv if argv is None else argv
    program = os.path.basename(argv[0]) if argv else ""
    if program == "__main__.py":  # python -m <package>
        program = os.path.basename(os.path.dirname(argv[0]))
    if "gunicorn" in program:
        return "web"
    for role in ("worker", "beat", "flower"):
        if role in argv[1:]:
            return role
    if program == "manage.py" and len(argv) > 1:
        return argv[1]
    return program if program and not program.startswith("-") else "python"


class ContextFilter(logging.Filter):
    """Adds `role`, and the order and task bound to the running task, to every record that
    does not carry them already. Installed on the handler, so it sees every record."""

    role = process_role()

    def filter(self, record: logging.LogRecord) -> bool:
        record.role = self.role
        if getattr(record, "order_id", None) is None:
            order_id = _order_id.get()
            if order_id is None:
                record.__dict__.pop("order_id", None)  # an explicit None says nothing
            else:
                record.order_id = order_id
        task = _task.get()
        if task is not None and not hasattr(record, "task_id"):
            record.task_id, record.task_name = task
        return True


class OneLineWarning(logging.Filter):
    """For a logger of the client's mistakes that Django reports as our errors: a request
    naming a host not in ALLOWED_HOSTS (a scanner, a wrong proxy setting) is answered 400 and
    logged as one WARNING line, without the traceback Django attaches."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


class JsonFormatter(_JsonFormatter):
    """{"time": "...Z", "level": "INFO", "logger": "...", "message": "...", "pid": 1, ...}
    plus every `extra` field (order_id, event, role, task_id, ...)."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(process)d %(message)s")
        kwargs.setdefault(
            "rename_fields", {"levelname": "level", "name": "logger", "process": "pid"}
        )
        kwargs.setdefault("timestamp", "time")
        super().__init__(**kwargs)


class PlainFormatter(logging.Formatter):
    """`2026-01-01 12:00:00,000 INFO orders.services [order 42] message`."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s%(order_tag)s %(message)s")
        super().__init__(**kwargs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        order_id = getattr(record, "order_id", None)
        record.order_tag = "" if order_id is None else f" [order {order_id}]"
        return super().formatMessage(record)


def logging_config(*, fmt: str, level: str) -> dict[str, Any]:
    """The dictConfig of every process: one console handler in the chosen format."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "orderproj.logs.ContextFilter"},
            "one_line_warning": {"()": "orderproj.logs.OneLineWarning"},
        },
        "formatters": {
            "json": {"()": "orderproj.logs.JsonFormatter"},
            "plain": {"()": "orderproj.logs.PlainFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": fmt,
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "INFO"},
            "django.security.DisallowedHost": {"filters": ["one_line_warning"]},
        },
    }


def gunicorn_logging_config(*, fmt: str, level: str) -> dict[str, Any]:
    """The same, for gunicorn's own loggers (startup, worker errors, access log): they hand
    their records to the root handler instead of writing lines of their own format."""
    config = logging_config(fmt=fmt, level=level)
    config["loggers"].update(
        {
            name: {"handlers": [], "propagate": True, "level": "INFO"}
            for name in ("gunicorn.error", "gunicorn.access")
        }
    )
    return config
