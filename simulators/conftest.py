"""Fixtures of the simulator tests: each test gets fresh storage served over real HTTP."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from simulators import payments, receiver, warehouse
from simulators.tests.servers import serve


@pytest.fixture
def payment_db(tmp_path: Path) -> str:
    return str(tmp_path / "payment-sim.sqlite3")


@pytest.fixture
def warehouse_db(tmp_path: Path) -> str:
    return str(tmp_path / "warehouse-sim.sqlite3")


@pytest.fixture
def receiver_db(tmp_path: Path) -> str:
    return str(tmp_path / "receiver-sim.sqlite3")


@pytest.fixture
def payment_url(payment_db: str) -> Iterator[str]:
    with serve(payments.create_app(payment_db)) as url:
        yield url


@pytest.fixture
def warehouse_url(warehouse_db: str) -> Iterator[str]:
    with serve(warehouse.create_app(warehouse_db)) as url:
        yield url


@pytest.fixture
def receiver_url(receiver_db: str) -> Iterator[str]:
    with serve(receiver.create_app(receiver_db)) as url:
        yield url


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session
