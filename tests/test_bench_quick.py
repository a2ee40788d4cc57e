"""`make bench-quick` in CI: the order benchmark's quick mode on the real stack (gunicorn, a
Celery worker, the simulators, a private Redis, its own PostgreSQL database) must lose no
order, oversell nothing and charge nothing twice, in each scenario. Speed is never judged
here: the machine running the suite is not the benchmark's."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def run_quick_bench(out_dir: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    server = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/orderproj"
    env = {
        **os.environ,
        "BENCH_DATABASE_URL": server.rsplit("/", 1)[0] + "/orderproj_bench_quick_ci",
    }
    argv = [
        sys.executable,
        "-m",
        "bench.orders",
        "--quick",
        "--quiet",
        "--fresh-db",
        "--webhook",
        "--out-dir",
        str(out_dir),
    ]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the bench stops every process it started
        output, _ = proc.communicate(timeout=60)
        raise AssertionError(f"the quick bench took over {timeout}s:\n{output[-4000:]}") from None
    return subprocess.CompletedProcess(argv, proc.returncode, output)


def test_quick_bench_keeps_every_invariant_in_every_scenario(tmp_path):
    # when
    run = run_quick_bench(tmp_path)

    # then
    assert run.returncode == 0, run.stdout[-6000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    scenarios = {s["name"]: s for s in result["scenarios"]}
    assert list(scenarios) == ["spread", "hot", "slow-payments"]
    for s in scenarios.values():
        assert (s["lost"], s["oversold"], s["double_charged"], s["api_errors"]) == (0, 0, 0, 0)
        assert s["audit_violations"] == []
        assert s["accepted"] == s["orders"] > 0
        assert s["queries_per_order"] > 0
        assert (tmp_path / f"{s['name']}.png").stat().st_size > 0
        hooks = s["webhooks"]  # one subscription to every order event: each delivered
        assert hooks["delivered"] == hooks["events"] >= s["orders"]
        assert (hooks["failed"], hooks["pending"]) == (0, 0)
    assert scenarios["spread"]["statuses"] == {"fulfilled": scenarios["spread"]["orders"]}
    hot = scenarios["hot"]  # the flash sale sells exactly its stock; the rest are refused
    assert hot["units_sold"] == hot["stock_units"] < hot["orders"]
    assert hot["failure_reasons"] == {"out_of_stock": hot["orders"] - hot["stock_units"]}
    assert result["celery_noop_per_s"] > 0
