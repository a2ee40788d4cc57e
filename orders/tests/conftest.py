"""Fixtures of the order API tests."""

import threading
from collections.abc import Callable, Iterator

import pytest
from django.core.cache import cache
from django.db import connection, connections, transaction

from inventory.tests.factories import product_in_warehouse
from orders.models import Order
from orders.tests.helpers import place_order
from orders.throttling import OrderCreateThrottle


@pytest.fixture
def placed(customer, warehouse_sim) -> Callable[[int], list[Order]]:
    """place(n): n new pending orders of one unit each, oldest first."""
    product = product_in_warehouse(warehouse_sim, 1000)

    def place(n: int) -> list[Order]:
        return [place_order(customer, (product.id, 1)) for _ in range(n)]

    return place


@pytest.fixture
def order_throttle(settings, customer, other_customer) -> Iterator[Callable[[str], None]]:
    """Turns the order creation throttle on at the rate given. The counters live in the shared
    cache (Redis) and user ids repeat from one test run to the next, so the counters of this
    test's users are cleared before and after it."""
    throttle = OrderCreateThrottle()
    keys = [
        throttle.cache_format % {"scope": throttle.scope, "ident": u.pk}
        for u in (customer, other_customer)
    ]
    cache.delete_many(keys)

    def enable(rate: str) -> None:
        settings.ORDER_CREATE_THROTTLE_RATE = rate

    yield enable
    cache.delete_many(keys)


class TableLock:
    """Holds `LOCK TABLE <table> IN <mode> MODE` from its own connection (a thread) until
    released: with EXCLUSIVE, writers of that table wait and readers do not. Makes "a request
    still in flight" deterministic: it stops at its INSERT, with everything before committed.
    (Not a table that the earlier writes reference: their foreign key checks would wait too.)
    With ACCESS EXCLUSIVE, readers wait too."""

    def __init__(self, table: str, mode: str = "EXCLUSIVE"):
        self.table = table
        self.mode = mode
        self._locked = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {self.table} IN {self.mode} MODE")
                self._locked.set()
                self._release.wait(timeout=60)
        finally:
            connections.close_all()

    def __enter__(self) -> "TableLock":
        self._thread.start()
        assert self._locked.wait(timeout=10), "could not lock the table"
        return self

    def release(self) -> None:
        self._release.set()
        self._thread.join(timeout=10)

    def __exit__(self, *exc) -> None:
        self.release()


class Background:
    """Runs a callable in a thread with its own database connection; `result()` re-raises."""

    def __init__(self, target: Callable[[], object]):
        self._target = target
        self._value: object = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._target()
        except BaseException as exc:  # handed to the test thread by result()
            self._error = exc
        finally:
            connections.close_all()

    def result(self, timeout: float = 30) -> object:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the background call did not finish"
        if self._error is not None:
            raise self._error
        return self._value
