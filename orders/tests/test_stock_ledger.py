"""The stock ledger as orders write it: every change an order makes to a product's buckets is
one movement referring to that order (and to the person who did it, if one did), and each
product's movements add up to its levels, also when orders, a warehouse sync and shipments'
answers interleave."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections

from inventory.models import StockLevel, StockMovement
from inventory.selectors import stock_ledger_discrepancies
from inventory.sync import warehouse_sync
from inventory.tests.factories import product_in_warehouse, product_with_stock
from inventory.types import Shipment, SkuLevel
from orders.audit import audit
from orders.interventions import order_cancel
from orders.models import Order
from orders.tests.helpers import place_order, run_to_completion
from orders.transitions import order_transition
from orders.workflow import orders_fulfil

pytestmark = pytest.mark.django_db(transaction=True)

COLUMNS = (
    "reason",
    "on_hand_change",
    "reserved_change",
    "committed_change",
    "on_hand_after",
    "reserved_after",
    "committed_after",
    "order_id",
)


def ledger(product) -> list[tuple]:
    """The product's movements, oldest first: reason, the three changes, the three levels
    after, the order."""
    return list(StockMovement.objects.filter(product=product).order_by("id").values_list(*COLUMNS))


def assert_ledger_explains_levels(product_ids) -> None:
    """Each movement leaves the levels the one before it left, plus its changes; the last
    leaves the product's levels."""
    for product_id in product_ids:
        level = (0, 0, 0)
        for row in StockMovement.objects.filter(product_id=product_id).order_by("id"):
            changes = (row.on_hand_change, row.reserved_change, row.committed_change)
            after = (row.on_hand_after, row.reserved_after, row.committed_after)
            assert tuple(a + c for a, c in zip(level, changes, strict=True)) == after, row.pk
            level = after
        stock = StockLevel.objects.get(product_id=product_id)
        assert level == (stock.on_hand, stock.reserved, stock.committed), product_id


def test_an_order_shipped_is_reserved_committed_shipped_and_answered_in_the_ledger(
    customer, payment_sim, warehouse_sim
):
    # given: 10 units, here and at the warehouse
    product = product_in_warehouse(warehouse_sim, 10)

    # when: an order of 3 runs its whole life
    order = place_order(customer, (product.id, 3))
    run_to_completion(order.id)

    # then: each step is a movement referring to the order, with the levels it left
    assert Order.objects.get(pk=order.pk).status == "fulfilled"
    assert ledger(product) == [
        ("opening", 10, 0, 0, 10, 0, 0, None),
        ("reserve", 0, 3, 0, 10, 3, 0, order.pk),
        ("commit", 0, -3, 3, 10, 0, 3, order.pk),
        ("ship", 0, 0, -3, 10, 0, 0, order.pk),
        ("shipment_answer", -3, 0, 0, 7, 0, 0, order.pk),  # the warehouse's new on_hand
    ]
    assert stock_ledger_discrepancies() == []


def test_a_declined_order_gives_its_reservation_back_in_the_ledger(customer, payment_sim):
    product = product_with_stock(5)
    payment_sim.script("decline")

    order = place_order(customer, (product.id, 2))
    run_to_completion(order.id)

    assert Order.objects.get(pk=order.pk).failure_reason == "payment_declined"
    assert ledger(product)[1:] == [
        ("reserve", 0, 2, 0, 5, 2, 0, order.pk),
        ("release", 0, -2, 0, 5, 0, 0, order.pk),
    ]


def test_an_operator_cancelling_a_paid_order_is_named_on_its_release(
    customer, staff_user, payment_sim
):
    # given: a confirmed order (no warehouse configured: it is not pushed)
    product = product_with_stock(5)
    order = place_order(customer, (product.id, 2))
    run_to_completion(order.id)
    assert Order.objects.get(pk=order.pk).status == "confirmed"

    # when: an operator cancels it
    order_cancel(order=Order.objects.get(pk=order.pk), actor=staff_user, via="admin")

    # then: its committed units are released, by the operator; the system did the rest
    release = StockMovement.objects.filter(product=product).latest("id")
    assert (release.reason, release.committed_change, release.order_id, release.actor) == (
        "release",
        -2,
        order.pk,
        staff_user,
    )
    actors = StockMovement.objects.filter(product=product).values_list("actor", flat=True)
    assert list(actors.order_by("id")) == [None, None, None, staff_user.pk]


def test_a_set_of_orders_reserved_at_once_has_one_movement_each_in_id_order(customer):
    product = product_with_stock(10)
    orders = [place_order(customer, (product.id, n)) for n in (1, 2, 3)]

    order_transition(orders=orders, event="reserved", source="pending")

    assert ledger(product)[1:] == [
        ("reserve", 0, 1, 0, 10, 1, 0, orders[0].pk),
        ("reserve", 0, 2, 0, 10, 3, 0, orders[1].pk),
        ("reserve", 0, 3, 0, 10, 6, 0, orders[2].pk),
    ]


def test_orders_a_sync_and_shipment_answers_interleaving_leave_a_ledger_that_adds_up(
    customer, payment_sim, warehouse_sim, settings
):
    # given: three products the warehouse and we agree on, and 60 orders for them
    settings.ORDER_STOCK_RETRY_MAX = 0
    products = [product_in_warehouse(warehouse_sim, 40) for _ in range(3)]
    orders = [
        place_order(customer, (products[i % 3].id, 1 + i % 2), (products[(i + 1) % 3].id, 1))
        for i in range(60)
    ]
    stop = threading.Event()
    syncs = []

    def sync_and_restock() -> None:
        """The warehouse restocks and we sync, over and over, while orders ship."""
        try:
            round_ = 0
            while not stop.is_set():
                round_ += 1
                warehouse_sim.set_stock({p.sku: 40 + round_ for p in products[:2]})
                syncs.append(warehouse_sync(trigger="test"))
        finally:
            connections.close_all()

    def process(order_id: int) -> None:
        try:
            run_to_completion(order_id)
        finally:
            connections.close_all()

    # when: the orders are processed by 6 threads while the sync runs
    syncer = threading.Thread(target=sync_and_restock)
    syncer.start()
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            for future in [pool.submit(process, o.pk) for o in orders]:
                future.result()
    finally:
        stop.set()
        syncer.join(timeout=60)

    # then: every kind of change happened, and the ledger explains every level
    reasons = set(StockMovement.objects.values_list("reason", flat=True))
    assert {"reserve", "commit", "ship", "shipment_answer", "warehouse_sync"} <= reasons
    assert len(syncs) >= 2 and any(run.applied for run in syncs)
    assert_ledger_explains_levels([p.pk for p in products])
    assert stock_ledger_discrepancies() == []
    assert audit().violations == []
    fulfilled = Order.objects.filter(status="fulfilled").values_list("pk", flat=True)
    shipped = StockMovement.objects.filter(reason="ship").values_list("order_id", flat=True)
    assert set(shipped) == set(fulfilled) and len(fulfilled) > 0


def test_a_shipment_of_a_cancelled_order_records_the_warehouses_answer_under_that_order(
    customer, payment_sim
):
    # given: a confirmed order, cancelled (its committed units released) before the
    # warehouse's answer that it shipped arrives
    product = product_with_stock(10)
    order = place_order(customer, (product.id, 2))
    run_to_completion(order.id)
    order = Order.objects.get(pk=order.pk)
    order_transition(orders=[order], event="cancelled", source="confirmed")

    # when: the shipment's answer comes: 8 on hand at version 2
    answer = Shipment("SHIP-1", [SkuLevel(product.sku, 8, 2)])
    shipped = orders_fulfil([order], {order.pk: answer})

    # then: the order stays cancelled; the new on_hand is in the ledger, under the order
    assert shipped == []
    assert Order.objects.get(pk=order.pk).status == "cancelled"
    assert ledger(product)[-2:] == [
        ("release", 0, 0, -2, 10, 0, 0, order.pk),
        ("shipment_answer", -2, 0, 0, 8, 0, 0, order.pk),
    ]
    assert order.logs.filter(event="shipped_after_cancel").count() == 1
    assert stock_ledger_discrepancies() == []
