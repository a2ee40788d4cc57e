"""Structured logs: one order followed through the JSON log lines of the web server (gunicorn,
as deployed) and of a Celery worker, by its id."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from rest_framework.authtoken.models import Token

from inventory.tests.factories import product_in_warehouse
from orderproj.celery import app
from orders.models import Order
from tests.live import ROOT, WorkerProcess
from tests.processes import free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def json_lines(path: Path) -> list[dict]:
    """Every log line of a process, parsed; Celery's start-up banner is printed, not logged."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    logged = [line for line in lines if line.startswith("{")]
    return [json.loads(line) for line in logged]


@pytest.fixture
def json_env(worker_env) -> dict[str, str]:
    return {**worker_env, "LOG_FORMAT": "json", "SERVE_SIMULATORS": "false"}


@pytest.fixture
def web(json_env, tmp_path):
    """The project under gunicorn, as Procfile and docker-compose.yml run it."""
    port = free_port()
    log_path = tmp_path / "web.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "orderproj.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--access-logfile",
                "-",
            ],
            cwd=ROOT,
            env=json_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, log_path.read_text()
        try:
            return requests.get(f"{base}/api/products/", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(answers, timeout=30, message="gunicorn to serve")
        yield base, log_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


@pytest.fixture
def worker(json_env, tmp_path):
    app.control.purge()
    worker = WorkerProcess(json_env, log_path=tmp_path / "worker.log")
    worker.wait_ready()
    yield worker
    worker.stop()


def test_one_order_is_followed_through_web_and_worker_json_logs_by_its_id(
    web, worker, customer, payment_sim, warehouse_sim
):
    # given
    base, web_log = web
    product = product_in_warehouse(warehouse_sim, 5)
    token = Token.objects.create(user=customer)

    # when: an order is placed over HTTP and processed by the worker
    response = requests.post(
        f"{base}/api/orders/",
        timeout=10,
        headers={"Authorization": f"Token {token.key}"},
        json={"items": [{"product_id": product.id, "quantity": 1}]},
    )
    assert response.status_code == 202, response.text
    order_id = response.json()["id"]
    wait_for(
        lambda: Order.objects.get(pk=order_id).status == "fulfilled",
        timeout=30,
        message="the order to be fulfilled",
    )

    # then: every line either process logged is JSON; gunicorn's own included
    web_lines, worker_lines = json_lines(web_log), json_lines(worker.log_path)
    assert len(web_lines) == len(web_log.read_text().splitlines())
    assert any(line["logger"] == "gunicorn.access" for line in web_lines)
    for line in web_lines + worker_lines:
        assert {"time", "level", "logger", "message", "role", "pid"} <= set(line), line

    # and filtering both by the order's id gives its whole path, in order, across processes
    path = sorted(
        (line for line in web_lines + worker_lines if line.get("order_id") == order_id),
        key=lambda line: line["time"],
    )
    events = [(line["role"], line["event"]) for line in path if "event" in line]
    assert events == [
        ("web", "created"),
        ("worker", "reserved"),
        ("worker", "confirmed"),
        ("worker", "fulfilled"),
    ]
    # the batch that took it up ran in the worker (its own lines are about every order of
    # the batch, so they carry none of their ids)
    assert any(
        line["logger"] == "celery.app.trace"
        and line.get("task_name") == "orders.process_ready"
        and "succeeded" in line["message"]
        for line in worker_lines
    )
    assert len({line["pid"] for line in path}) >= 2  # web and worker processes
    # no line of the worker names the order without carrying its id
    assert not [
        line
        for line in worker_lines
        if f"order {order_id} " in line["message"] and line.get("order_id") != order_id
    ]


def test_a_request_for_a_host_not_served_is_one_warning_line(web):
    # given
    base, web_log = web
    before = len(json_lines(web_log))

    # when: a scanner, or a proxy passing the wrong Host header
    response = requests.get(f"{base}/api/products/", headers={"Host": "evil.example"}, timeout=5)

    # then: 400 in the error shape, and besides the access log one WARNING line naming the
    # host, without a traceback
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"

    def logged() -> list[dict]:
        return json_lines(web_log)[before:]

    wait_for(
        lambda: any(line["logger"] == "gunicorn.access" for line in logged()),
        timeout=10,
        message="the request's access log line",
    )
    lines = [line for line in logged() if line["logger"] != "gunicorn.access"]
    assert [(line["level"], line["logger"]) for line in lines] == [
        ("WARNING", "django.security.DisallowedHost")
    ], lines
    assert "evil.example" in lines[0]["message"] and "exc_info" not in lines[0]
    assert "Traceback" not in web_log.read_text()
