"""The combined WSGI application: both mounts, a JSON 404 elsewhere, settings from the env."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators import wsgi
from simulators.tests.servers import serve

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = (
    "django",
    "rest_framework",
    "orderproj",
    "catalog",
    "inventory",
    "payments",
    "orders",
)


def test_build_application_serves_every_simulator(http, tmp_path: Path):
    with serve(wsgi.build_application(str(tmp_path / "var"))) as url:
        payment = http.get(f"{url}/sim/payments/health")
        stock = http.get(f"{url}/sim/warehouse/stock")
        elsewhere = http.get(f"{url}/api/orders/")

    assert (payment.status_code, payment.json()) == (200, {"status": "ok"})
    assert (stock.status_code, stock.json()["results"]) == (200, [])
    assert (elsewhere.status_code, elsewhere.json()["error"]["code"]) == (404, "not_found")
    assert sorted(p.name for p in (tmp_path / "var").glob("*.sqlite3")) == [
        "payment-sim.sqlite3",
        "receiver-sim.sqlite3",
        "warehouse-sim.sqlite3",
    ]


def test_behaviour_defaults_come_from_the_environment(
    http, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PAYMENT_SIM_DECLINE_RATE", "1")
    monkeypatch.setenv("WAREHOUSE_SIM_LATENCY_MS", "20")

    with serve(wsgi.build_application(str(tmp_path))) as url:
        charge = http.post(
            f"{url}/sim/payments/charges",
            json={"amount": "5.00", "currency": "EUR", "idempotency_key": "env"},
        )
        warehouse_config = http.get(f"{url}/sim/warehouse/_control/config").json()

    assert charge.json()["status"] == "declined"
    assert warehouse_config["latency_ms"] == 20


def test_an_unreadable_setting_stops_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PAYMENT_SIM_ERROR_RATE", "often")

    with pytest.raises(ValueError, match="PAYMENT_SIM_ERROR_RATE"):
        wsgi.build_application(str(tmp_path))


@pytest.fixture
def fresh_default_application() -> Iterator[None]:
    wsgi._default_application.cache_clear()
    yield
    wsgi._default_application.cache_clear()


def test_module_application_uses_the_storage_paths_from_the_env(
    http, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_default_application
):
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("WAREHOUSE_SIM_DB", str(tmp_path / "elsewhere" / "stock.sqlite3"))

    with serve(wsgi.application) as url:
        assert http.get(f"{url}/sim/warehouse/health").status_code == 200

    assert (tmp_path / "var" / "payment-sim.sqlite3").exists()
    assert (tmp_path / "elsewhere" / "stock.sqlite3").exists()
    assert not (tmp_path / "var" / "warehouse-sim.sqlite3").exists()


def test_importing_loads_nothing_of_the_django_project_and_opens_no_storage(tmp_path: Path):
    # The simulators stand in for third parties: reached over HTTP only, sharing no code.
    script = (
        "import sys, simulators.wsgi\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {PROJECT_PACKAGES!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env={**os.environ, "VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )

    assert result.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == []
