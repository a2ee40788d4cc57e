"""Confirmed orders pushed to the warehouse simulator over HTTP."""

import threading

import pytest
from django.db import connections

from inventory.models import StockLevel, WarehouseSyncRun
from inventory.sync import warehouse_sync
from inventory.tests.factories import product_in_warehouse
from orders.models import Order
from orders.reconciler import reconcile
from orders.selectors import stock_discrepancies
from orders.tests.helpers import (
    advance,
    confirm_order,
    later,
    log_events,
    place_order,
    run_to_completion,
)
from payments.gateway import get_gateway
from tests.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def confirmed_order(customer, product, quantity: int) -> Order:
    order = confirm_order(place_order(customer, (product.id, quantity)).id)
    order.refresh_from_db()
    assert order.status == "confirmed"
    return order


def test_shipment_moves_committed_units_out_exactly_once(customer, payment_sim, warehouse_sim):
    # given
    product = product_in_warehouse(warehouse_sim, 10)
    order = confirmed_order(customer, product, 4)

    # when: pushed three times (a retried or duplicated task)
    for _ in range(3):
        assert advance(order.id)[order.id].done

    # then
    order.refresh_from_db()
    assert order.status == "fulfilled"
    assert [e for e in log_events(order) if e[2] == "fulfilled"] == [
        ("confirmed", "fulfilled", "fulfilled")
    ]
    row = StockLevel.objects.get(product=product)
    assert (row.on_hand, row.version, row.reserved, row.committed) == (6, 2, 0, 0)
    assert warehouse_sim.shipments()["count"] == 1
    assert warehouse_sim.stock()[product.sku] == (6, 2)


def test_warehouse_without_an_answer_is_retried_with_backoff(
    customer, payment_sim, warehouse_sim, settings
):
    product = product_in_warehouse(warehouse_sim, 10)
    order = confirmed_order(customer, product, 1)
    warehouse_sim.configure(error_rate=1.0)

    first = advance(order.id)[order.id]
    second = advance(order.id)[order.id]

    assert not first.done and not second.done and first.retry_in < second.retry_in
    assert first.retry_in >= settings.ORDER_SHIP_RETRY_BASE_SECONDS
    warehouse_sim.configure(error_rate=0.0)
    assert advance(order.id)[order.id].done
    order.refresh_from_db()
    assert order.status == "fulfilled"
    assert [e[2] for e in log_events(order)].count("shipment_retry") == 2


def test_a_shipment_the_warehouse_refuses_is_logged_and_the_order_stays_confirmed(
    customer, payment_sim, warehouse_sim
):
    product = product_in_warehouse(warehouse_sim, 10)
    order = confirmed_order(customer, product, 5)
    warehouse_sim.set_stock({product.sku: 2})  # shrinkage the sync has not seen yet

    assert advance(order.id)[order.id].done

    order.refresh_from_db()
    assert order.status == "confirmed"
    refused = order.logs.get(event="shipment_refused")
    assert refused.data["code"] == "insufficient_stock"
    assert StockLevel.objects.get(product=product).committed == 5


def refund_unanswered(order: Order, client, settings) -> None:
    """A customer's cancel whose refund got no answer (the payment service unreachable)."""
    working_url = settings.PAYMENT_API_URL
    settings.PAYMENT_API_URL = f"http://127.0.0.1:{free_port()}/payments"
    get_gateway.cache_clear()
    assert client.post(f"/api/orders/{order.id}/cancel/").status_code == 503
    settings.PAYMENT_API_URL = working_url
    get_gateway.cache_clear()


def test_an_order_whose_refund_for_a_cancel_was_made_after_all_is_cancelled_not_shipped(
    customer, customer_client, payment_sim, warehouse_sim, settings
):
    # given: a confirmed order whose cancel got no answer from the refund, though the payment
    # service did refund the charge (its answer was lost)
    product = product_in_warehouse(warehouse_sim, 10)
    order = confirmed_order(customer, product, 2)
    refund_unanswered(order, customer_client, settings)
    payment_sim.session.post(
        f"{payment_sim.url}/charges/{order.payment.idempotency_key}/refund", timeout=5
    ).raise_for_status()

    # when: its push to the warehouse runs (the fulfilment task, or a re-push), and later the
    # reconciler finds the cancellation unfinished
    assert advance(order.id)[order.id].done
    reconcile(now=later(settings.ORDER_STUCK_AFTER_SECONDS + 1))

    # then: never shipped; the cancellation was finished in the canceller's name
    order.refresh_from_db()
    assert (order.status, order.payment.status) == ("cancelled", "refunded")
    assert warehouse_sim.shipments()["count"] == 0
    assert log_events(order)[-1] == ("confirmed", "cancelled", "cancelled")
    assert order.logs.last().actor == customer
    row = StockLevel.objects.get(product=product)
    assert (row.reserved, row.committed, row.available) == (0, 0, 10)


def test_an_order_whose_refund_for_a_cancel_went_unanswered_never_ships_and_is_cancelled(
    customer, customer_client, payment_sim, warehouse_sim, settings
):
    # given: a confirmed order whose cancel got no answer, and no refund was made
    product = product_in_warehouse(warehouse_sim, 10)
    order = confirmed_order(customer, product, 2)
    refund_unanswered(order, customer_client, settings)

    # when: its push runs, then the reconciler
    assert advance(order.id)[order.id].done
    report = reconcile(now=later(settings.ORDER_STUCK_AFTER_SECONDS + 1))

    # then: not shipped, as the 503 said; refunded and cancelled once the service answered
    order.refresh_from_db()
    assert report.cancelled == 1
    assert (order.status, order.payment.status) == ("cancelled", "refunded")
    assert payment_sim.charge(order.payment.idempotency_key)["status"] == "refunded"
    assert warehouse_sim.shipments()["count"] == 0


def test_a_cancellation_stays_unfinished_and_unshipped_while_the_payment_service_is_silent(
    customer, customer_client, payment_sim, warehouse_sim, settings
):
    # given: a confirmed order whose cancel got no answer from the refund
    product = product_in_warehouse(warehouse_sim, 10)
    order = confirmed_order(customer, product, 2)
    refund_unanswered(order, customer_client, settings)

    # when: its push and the reconciler run while the payment service still cannot be reached
    settings.PAYMENT_API_URL = f"http://127.0.0.1:{free_port()}/payments"
    get_gateway.cache_clear()
    assert advance(order.id)[order.id].done
    reconcile(now=later(settings.ORDER_STUCK_AFTER_SECONDS + 1))

    # then: nothing shipped, nothing released; the order says why
    order.refresh_from_db()
    assert (order.status, order.payment.status) == ("confirmed", "refund_in_doubt")
    assert order.cancel_requested_at is not None
    assert warehouse_sim.shipments()["count"] == 0
    assert order.logs.last().event == "cancel_refund_unanswered"
    assert StockLevel.objects.get(product=product).committed == 2


def test_orders_syncs_and_shipments_running_at_once_keep_the_stock_ledger_exact(
    customer, payment_sim, warehouse_sim, settings
):
    # given: 5 products with 12 units each on both sides, 100 orders of 1..3 units
    settings.ORDER_STOCK_RETRY_MAX = 0
    settings.WAREHOUSE_SYNC_PAGE_SIZE = 2
    products = [product_in_warehouse(warehouse_sim, 12) for _ in range(5)]
    orders = [place_order(customer, (products[i % 5].id, 1 + i % 3)).id for i in range(100)]
    processing_done = threading.Event()
    errors = []

    def guarded(work):
        def run():
            try:
                work()
            except Exception as exc:  # surfaced by the assertion below
                errors.append(exc)
            finally:
                connections.close_all()

        return threading.Thread(target=run)

    def process(share):
        for n in range(0, len(share), 5):  # batches of five, as claims make them
            run_to_completion(*share[n : n + 5])

    def ship():
        while not processing_done.is_set():
            advance(*Order.objects.filter(status="confirmed").values_list("id", flat=True))

    def sync():
        while not processing_done.is_set():
            warehouse_sim.tick(restock_rate=0.3, shrink_rate=0.3, max_restock=4)
            warehouse_sync(trigger="test")

    # when: 4 processors, 2 shippers and a syncer (with restocks and shrinkage) at once
    workers = [guarded(lambda s=orders[i::4]: process(s)) for i in range(4)]
    helpers = [guarded(ship), guarded(ship), guarded(sync)]
    for t in workers + helpers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    processing_done.set()
    for t in helpers:
        t.join(timeout=60)
    assert not [t for t in workers + helpers if t.is_alive()], "a thread did not finish"
    advance(*Order.objects.filter(status="confirmed").values_list("id", flat=True))

    # then: reserved and committed are exactly what orders hold, nothing negative
    assert errors == []
    assert stock_discrepancies() == []
    statuses = set(Order.objects.values_list("status", flat=True))
    assert statuses <= {"fulfilled", "failed", "confirmed"} and "fulfilled" in statuses
    assert not StockLevel.objects.filter(reserved__lt=0).exists()
    assert not StockLevel.objects.filter(committed__lt=0).exists()
    assert WarehouseSyncRun.objects.filter(status="succeeded").exists()


def test_a_shipment_made_while_a_cancel_is_under_way_wins_and_the_cancel_is_refused(
    customer, payment_sim, warehouse_sim, staff_user
):
    from inventory.fulfilment import shipments_push
    from orders.interventions import OrderNotCancellable, order_cancel
    from orders.workflow import orders_fulfil

    # given: the shipment went out, its answer not recorded yet
    product = product_in_warehouse(warehouse_sim, 10)
    order = confirmed_order(customer, product, 4)
    ref = str(order.uid)
    shipment = shipments_push(shipments=[(ref, [(product.sku, 4)])])[ref]
    stale = Order.objects.get(pk=order.pk)  # as the shipping task read it: confirmed

    # when: an operator cancels, then the shipment's answer is recorded
    with pytest.raises(OrderNotCancellable, match="already shipped"):
        order_cancel(order=order, actor=staff_user, via="admin")
    assert orders_fulfil([stale], {stale.pk: shipment}) == []

    # then: the warehouse's answer decided: fulfilled, the charge kept, committed units
    # released once, on_hand following the warehouse
    order.refresh_from_db()
    assert order.status == "fulfilled" and order.cancel_requested_at is None
    assert payment_sim.charge(order.payment.idempotency_key)["status"] == "captured"
    assert [e[2] for e in log_events(order)][-3:] == [
        "cancel_requested",
        "fulfilled",
        "cancel_refused_shipped",
    ]
    row = StockLevel.objects.get(product=product)
    assert (row.on_hand, row.version, row.committed) == (6, 2, 0)
