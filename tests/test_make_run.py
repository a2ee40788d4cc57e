"""`make run` on a bare checkout: no settings, so SQLite and the server-less broker. It
serves the API and the admin, runs a worker and beat, and Ctrl-C stops them all cleanly."""

import json
import os
import re
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
import requests

from tests.processes import free_port, kill_all_with_marker, processes_with_marker, wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def make_run(tmp_path):
    port = free_port()
    marker = f"ORDERPROJ_TEST_RUN={uuid.uuid4().hex}"
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "SECRET_KEY",
            "PAYMENT_API_URL",
            "WAREHOUSE_API_URL",
        )
    }
    env.update(
        {
            "PORT": str(port),
            "VAR_DIR": str(tmp_path / "var"),
            marker.split("=")[0]: marker.split("=")[1],
        }
    )
    # Appending: the processes write at the end whatever this test's reads do to the file
    # offset they share with it (with "w+" a read could land their writes elsewhere).
    log = (tmp_path / "make-run.log").open("a+")
    proc = subprocess.Popen(
        ["make", "run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc, port, marker, log, env
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        kill_all_with_marker(marker)


def log_text(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()


@pytest.mark.slow
def test_make_run_serves_runs_worker_and_beat_and_stops_cleanly(make_run):
    proc, port, marker, log, env = make_run
    base = f"http://127.0.0.1:{port}"

    def healthy():
        assert proc.poll() is None, log_text(log)
        try:
            return requests.get(f"{base}/api/health/", timeout=2).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # still starting
            return False

    # when: it has started
    wait_for(healthy, timeout=120, interval=0.5, message="GET /api/health/ == 200")

    # then: it listens on this machine only (its demo logins are public knowledge)
    assert f"Listening at: http://127.0.0.1:{port} " in log_text(log), log_text(log)[-3000:]
    # and health reports both dependencies, the admin login answers, all roles are running
    health = requests.get(f"{base}/api/health/", timeout=5).json()
    assert health["checks"]["database"]["ok"] and health["checks"]["broker"]["ok"]

    def admin_login_page():
        assert proc.poll() is None, log_text(log)[-6000:]  # make run itself must not end
        try:  # in a list: a Response with an error status is falsy
            return [requests.get(f"{base}/admin/login/", timeout=5)]
        except requests.ConnectionError as exc:  # a web worker restarting: the log says why
            print(f"admin login page: {exc}\n{log_text(log)[-6000:]}")
            return None

    (admin,) = wait_for(admin_login_page, timeout=30, interval=1, message="the admin login page")
    assert admin.status_code == 200 and "csrfmiddlewaretoken" in admin.text

    def roles():
        commands = processes_with_marker(marker).values()
        return {
            role
            for role in ("gunicorn", "worker", "beat")
            if any(role in c and ("celery" in c or role == "gunicorn") for c in commands)
        }

    wait_for(
        lambda: roles() == {"gunicorn", "worker", "beat"},
        timeout=60,
        message="web, worker and beat processes",
    )
    wait_for(
        lambda: "celery@" in log_text(log) and "ready" in log_text(log),
        timeout=60,
        message="the worker to report ready",
    )
    # and a newcomer's first order, with the curl command and token it printed, is confirmed
    output = log_text(log)
    token = re.search(r"Tokens:\s+customer\s+(\w+)", output).group(1)
    curl = re.search(r"(curl -s -X POST .*?)\n=+", output, re.S).group(1)
    answer = json.loads(
        subprocess.run(
            ["bash", "-c", curl], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    )
    assert answer["status"] == "pending"

    def order_status():
        return requests.get(
            f"{base}/api/orders/{answer['id']}/",
            timeout=5,
            headers={"Authorization": f"Token {token}"},
        ).json()["status"]

    wait_for(
        lambda: order_status() in ("fulfilled", "failed"),
        timeout=60,
        message="the first order to be processed",
    )
    # ... and its events reached the demo webhook receiver, each signature verified there
    received_url = re.search(r"Webhooks:\s+(\S+)", output).group(1)

    def events_received():
        records = requests.get(received_url, timeout=5).json()["results"]
        return {json.loads(r["body"])["type"]: r["verified"] for r in records}

    wait_for(
        lambda: len(events_received()) >= 4,
        timeout=60,
        message="the first order's four events at the demo receiver",
    )
    assert set(events_received().values()) == {True}
    history = requests.get(
        f"{base}/api/orders/{answer['id']}/logs/",
        timeout=5,
        headers={"Authorization": f"Token {token}"},
    ).json()["results"]
    assert [e["to_status"] for e in history if e["from_status"] != e["to_status"]] == [
        "pending",
        "reserved",
        "confirmed",
        "fulfilled",
    ]
    # the logs are readable lines (LOG_FORMAT=plain), tagged with the order they are about
    output = log_text(log)
    assert f"[order {answer['id']}] order {answer['id']} fulfilled" in output
    assert '{"level"' not in output

    # and a warehouse sync run from the command line succeeds on the embedded database
    def sync_succeeded() -> bool:
        sync = subprocess.run(
            [".venv/bin/python", "manage.py", "sync_warehouse"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sync.returncode == 0, sync.stdout + sync.stderr
        return ": succeeded in " in sync.stdout  # else skipped: beat's run held the lease

    wait_for(sync_succeeded, timeout=60, interval=1, message="a warehouse sync to succeed")

    # and the banner was printed again once everything was healthy, under the start-up output
    # (the worker's "ready" line among it), which has no warning that means nothing
    output = log_text(log)
    assert "All processes are up and healthy." in output
    assert output.rindex("Tokens:") > output.index(" ready."), output[-3000:]
    assert "No hostname was supplied" not in output

    # when: Ctrl-C, as a terminal sends it: SIGINT to the whole foreground process group
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)

    # then: each process stopped by itself within the grace time, none was killed, and the
    # process manager exited 0: make printed no error (make itself then dies of the SIGINT,
    # as an interrupted command does, so the shell sees 130)
    output = log_text(log)
    stops = re.findall(r"system\s+\| (\w+)\.1 stopped \(rc=(-?\d+)\)", output)
    assert sorted(stops) == [("beat", "0"), ("web", "0"), ("worker", "0")], output[-3000:]
    assert "SIGKILL" not in output and "make: ***" not in output, output[-3000:]
    assert "Warm shutdown" in output
    assert proc.returncode == -signal.SIGINT

    # and nothing it started is left
    wait_for(
        lambda: not processes_with_marker(marker),
        timeout=30,
        message=f"every process to exit, left: {processes_with_marker(marker)}",
    )
