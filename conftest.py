"""Fixtures shared by every app's tests."""

import os

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.live import (
    PaymentSim,
    ReceiverSim,
    SimulatorServer,
    WarehouseSim,
    WorkerProcess,
    test_database_url,
)

# Retry timings for the workflow in tests: short, so retries happen within a test's time,
# and the same in this process and in the worker processes the tests start.
WORKFLOW_TEST_SETTINGS = {
    "ORDER_STOCK_RETRY_MAX": 3,
    "ORDER_STOCK_RETRY_BASE_SECONDS": 0.3,
    "ORDER_STOCK_RETRY_MAX_DELAY": 5.0,
    "ORDER_PAYMENT_RETRY_MAX": 4,
    "ORDER_PAYMENT_RETRY_BASE_SECONDS": 0.1,
    "ORDER_PAYMENT_RETRY_MAX_DELAY": 2.0,
    "PAYMENT_READ_TIMEOUT": 1.0,
    "ORDER_SHIP_RETRY_BASE_SECONDS": 0.3,
}
# The simulator holds a "timed out" answer this long: past the client's read timeout.
PAYMENT_SIM_TIMEOUT_DELAY_MS = 2500


@pytest.fixture(autouse=True)
def _forget_api_tokens():
    """Each test starts with no token remembered by this process (a test's users, and their
    keys, are gone after it)."""
    from core.api.authentication import CachedTokenAuthentication

    CachedTokenAuthentication.forget()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def _user(username: str, *, staff: bool = False):
    return get_user_model().objects.create_user(
        username=username, password="pw-" + username, is_staff=staff
    )


@pytest.fixture
def customer(db):
    return _user("alice")


@pytest.fixture
def other_customer(db):
    return _user("bob")


@pytest.fixture
def staff_user(db):
    return _user("operator", staff=True)


def _client_for(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def customer_client(customer) -> APIClient:
    return _client_for(customer)


@pytest.fixture
def other_client(other_customer) -> APIClient:
    return _client_for(other_customer)


@pytest.fixture
def staff_client(staff_user) -> APIClient:
    return _client_for(staff_user)


# --- live collaborators ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def simulator_server(tmp_path_factory):
    server = SimulatorServer(tmp_path_factory.mktemp("simulators"))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _workflow_settings(settings, simulator_server):
    """Every test talks to the live simulators with the short test retry timings."""
    from core.publisher import broker_recovered
    from payments.gateway import get_gateway
    from webhooks.outbox import forget_wanted_types

    broker_recovered()  # a broker that failed in an earlier test is tried again at once

    for name, value in WORKFLOW_TEST_SETTINGS.items():
        setattr(settings, name, value)
    # Every wake-up is published here, so that tests may count them (the debounce has a test
    # of its own; the worker processes the tests start keep it).
    settings.ORDER_WAKE_DEBOUNCE_SECONDS = 0
    # Test users need no real password hashing (0.2 s each with the production hasher).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PAYMENT_API_URL = simulator_server.payment_url
    settings.WAREHOUSE_API_URL = simulator_server.warehouse_url
    get_gateway.cache_clear()
    forget_wanted_types()  # subscriptions of earlier tests are gone with their rows
    yield
    get_gateway.cache_clear()
    forget_wanted_types()


@pytest.fixture
def payment_sim(simulator_server) -> PaymentSim:
    """The payment simulator, reset, capturing everything unless a test says otherwise."""
    sim = PaymentSim(simulator_server.payment_url)
    sim.reset()
    sim.configure(timeout_delay_ms=PAYMENT_SIM_TIMEOUT_DELAY_MS, seed=1234)
    return sim


@pytest.fixture
def warehouse_sim(simulator_server) -> WarehouseSim:
    """The warehouse simulator, reset: no SKUs, no errors, no drift."""
    sim = WarehouseSim(simulator_server.warehouse_url)
    sim.reset()
    return sim


@pytest.fixture
def receiver_sim(simulator_server) -> ReceiverSim:
    """The webhook receiver simulator, reset: nothing received, every delivery answered 200,
    no secret (signatures recorded as unchecked) unless a test says otherwise."""
    sim = ReceiverSim(simulator_server.receiver_url)
    sim.reset()
    sim.configure(seed=1234)
    return sim


@pytest.fixture(scope="session")
def worker_env(django_db_setup, django_db_blocker, simulator_server) -> dict[str, str]:
    """The environment of a worker process that shares this test session's database."""
    from django.db import connection

    env = dict(os.environ)
    env.update({name: str(value) for name, value in WORKFLOW_TEST_SETTINGS.items()})
    env.update(
        {
            "DATABASE_URL": test_database_url(connection.settings_dict),
            "PAYMENT_API_URL": simulator_server.payment_url,
            "WAREHOUSE_API_URL": simulator_server.warehouse_url,
            "CONN_MAX_AGE": "0",
            # a worker sees the subscriptions a test has just made
            "WEBHOOK_TYPES_CACHE_SECONDS": "0",
        }
    )
    return env


@pytest.fixture(scope="module")
def celery_worker(worker_env, tmp_path_factory):
    """A real Celery worker consuming from the real broker, for the tests of one module (so
    it cannot race the tests of other modules that drive the workflow themselves)."""
    from orderproj.celery import app

    app.control.purge()
    worker = WorkerProcess(worker_env, log_path=tmp_path_factory.mktemp("worker") / "worker.log")
    worker.wait_ready()
    yield worker
    worker.stop()
