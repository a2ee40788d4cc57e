"""Many orders processed at once by threads, each with its own database connection."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections

from catalog.tests.factories import ProductFactory
from inventory.models import StockLevel
from inventory.tests.factories import StockLevelFactory
from orders.models import Order
from orders.tests.helpers import place_order, run_to_completion

THREADS = 8


def process_all(order_ids: list[int]) -> None:
    def work(order_id: int) -> None:
        try:
            run_to_completion(order_id)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for future in [pool.submit(work, oid) for oid in order_ids]:
            future.result()  # re-raises any error, a deadlock included


class AvailabilityWatch:
    """Samples the minimum `available` of some products from its own connection while
    orders are processed: it must never be negative at any committed moment."""

    def __init__(self, product_ids: list[int]):
        self.product_ids = product_ids
        self.minimum: int | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                values = StockLevel.objects.filter(product_id__in=self.product_ids).values_list(
                    "available", flat=True
                )
                low = min(values)
                self.minimum = low if self.minimum is None else min(self.minimum, low)
                self.samples += 1
        finally:
            connections.close_all()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.mark.django_db(transaction=True)
def test_200_buyers_of_50_units_exactly_50_confirmed(customer, payment_sim, settings):
    # given: 50 units, 200 single-unit orders, no waiting for restock
    settings.ORDER_STOCK_RETRY_MAX = 0
    product = StockLevelFactory(on_hand=50).product
    order_ids = [place_order(customer, (product.id, 1)).id for _ in range(200)]

    # when: processed concurrently by 8 threads
    with AvailabilityWatch([product.id]) as watch:
        process_all(order_ids)

    # then
    statuses = list(Order.objects.values_list("status", "failure_reason"))
    assert statuses.count(("confirmed", "")) == 50
    assert statuses.count(("failed", "out_of_stock")) == 150
    level = StockLevel.objects.get(product=product)
    assert (level.on_hand, level.reserved, level.committed, level.available) == (50, 0, 50, 0)
    assert watch.samples > 0 and watch.minimum >= 0
    assert payment_sim.stats()["captured"] == 50
    assert connection.vendor == "postgresql"


@pytest.mark.django_db(transaction=True)
def test_multi_line_orders_under_contention_are_all_or_nothing(customer, payment_sim, settings):
    # given: two products, 30 units each; 80 orders for one of each, lines listed in
    # opposite orders (the deadlock that naive locking would risk is driven exactly by
    # inventory/tests/test_services.py::test_two_reservations_listing_their_lines_in_opposite_
    # orders_never_deadlock)
    settings.ORDER_STOCK_RETRY_MAX = 0
    first, second = ProductFactory(), ProductFactory()
    StockLevelFactory(product=first, on_hand=30)
    StockLevelFactory(product=second, on_hand=30)
    order_ids = [
        place_order(
            customer,
            *([(first.id, 1), (second.id, 1)] if i % 2 else [(second.id, 1), (first.id, 1)]),
        ).id
        for i in range(80)
    ]

    # when
    with AvailabilityWatch([first.id, second.id]) as watch:
        process_all(order_ids)

    # then: 30 got both units, 50 got none; stock moved in pairs
    statuses = list(Order.objects.values_list("status", flat=True))
    assert statuses.count("confirmed") == 30
    assert statuses.count("failed") == 50
    for product in (first, second):
        level = StockLevel.objects.get(product=product)
        assert (level.reserved, level.committed, level.available) == (0, 30, 0)
    assert watch.minimum >= 0


@pytest.mark.django_db(transaction=True)
def test_the_same_order_processed_by_two_workers_at_once_is_charged_and_counted_once(
    customer, payment_sim
):
    product = StockLevelFactory(on_hand=5).product
    order = place_order(customer, (product.id, 2))
    barrier = threading.Barrier(4)

    def race() -> None:
        barrier.wait()
        try:
            run_to_completion(order.id)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    order.refresh_from_db()
    assert order.status == "confirmed"
    events = list(order.logs.values_list("event", flat=True))
    assert events.count("reserved") == 1 and events.count("confirmed") == 1
    level = StockLevel.objects.get(product=product)
    assert (level.reserved, level.committed) == (0, 2)
    # every charge request the provider got carried the order's one key (racing workers may
    # each send one; a worker that finds another's request in flight sends none), and it
    # captured once, with nothing refunded
    key = order.payment.idempotency_key
    requests = payment_sim.requests(kind="charge")
    assert 1 <= len(requests) <= 4 and {r["idempotency_key"] for r in requests} == {key}
    stats = payment_sim.stats()
    assert (stats["captured"], stats["refunded"]) == (1, 0)
