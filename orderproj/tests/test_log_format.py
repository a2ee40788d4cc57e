"""The two log formats, and what every record is given (orderproj/logs.py)."""

import importlib
import io
import json
import logging

import pytest

from orderproj.logs import (
    bind_task_context,
    clear_task_context,
    logging_config,
    process_role,
)


@pytest.fixture
def emit():
    """Log one record through a handler built like the project's console handler (its
    formatter and filter, from logging_config); returns the line."""
    stream = io.StringIO()
    logger = logging.getLogger("format-test")
    logger.propagate = False

    def log(fmt: str, message: str, **extra) -> str:
        config = logging_config(fmt=fmt, level="INFO")
        handler = logging.StreamHandler(stream)
        handler.setFormatter(_resolve(config["formatters"][fmt]["()"])())
        handler.addFilter(_resolve(config["filters"]["context"]["()"])())
        logger.handlers = [handler]
        stream.seek(0)
        stream.truncate()
        logger.info(message, extra=extra)
        return stream.getvalue().strip()

    yield log
    logger.handlers = []
    clear_task_context()


def _resolve(path: str):
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def test_json_lines_carry_the_order_id_given_or_bound_by_the_running_task(emit):
    given = json.loads(emit("json", "order 7 created", order_id=7, event="created"))
    assert (given["message"], given["order_id"], given["event"]) == (
        "order 7 created",
        7,
        "created",
    )
    assert {"time", "level", "logger", "pid", "role"} <= set(given)
    assert "order_id" not in json.loads(emit("json", "nothing about an order", order_id=None))

    bind_task_context(task_id="t-1", task_name="orders.process_order", order_id=8)
    bound = json.loads(emit("json", "Task succeeded"))

    assert (bound["order_id"], bound["task_id"], bound["task_name"]) == (
        8,
        "t-1",
        "orders.process_order",
    )


def test_plain_lines_are_readable_and_tagged_with_the_order(emit):
    assert emit("plain", "order 7 created", order_id=7).endswith(
        "INFO format-test [order 7] order 7 created"
    )
    assert emit("plain", "started").endswith("INFO format-test started")


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="LOG_FORMAT must be one of json, plain"):
        logging_config(fmt="xml", level="INFO")


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        ([".venv/bin/gunicorn", "orderproj.wsgi:application"], "web"),
        (["/x/site-packages/gunicorn/__main__.py", "orderproj.wsgi:application"], "web"),
        ([".venv/bin/celery", "-A", "orderproj", "worker"], "worker"),
        (["/x/site-packages/celery/__main__.py", "-A", "orderproj", "beat"], "beat"),
        (["manage.py", "sync_warehouse"], "sync_warehouse"),
    ],
)
def test_the_role_of_a_process_is_told_from_its_command(argv, role):
    assert process_role(argv) == role
