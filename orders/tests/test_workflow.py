"""The workflow as a service, against real PostgreSQL and the payment simulator over HTTP."""

import pytest

from inventory.models import StockLevel
from inventory.services import stock_set_from_warehouse
from inventory.tests.factories import product_in_warehouse, product_with_stock
from orders.models import Order, OrderEvent, OrderStatus
from orders.tests.helpers import advance, log_events, place_order, reserve, run_to_completion
from orders.transitions import IllegalTransition, order_transition

# The workflow refuses to call the payment service inside a transaction, so these tests
# run without the wrapping transaction of ordinary tests.
pytestmark = pytest.mark.django_db(transaction=True)


def stock(product) -> StockLevel:
    return StockLevel.objects.get(product=product)


@pytest.mark.embedded
def test_in_stock_order_is_reserved_charged_confirmed_and_shipped(
    customer, payment_sim, warehouse_sim
):
    # given
    product = product_in_warehouse(warehouse_sim, 10, price="12.50")
    order = place_order(customer, (product.id, 4))

    # when
    delays = run_to_completion(order.id)

    # then
    order.refresh_from_db()
    assert delays == []
    assert order.status == "fulfilled"
    assert log_events(order) == [
        ("", "pending", "created"),
        ("pending", "reserved", "reserved"),
        ("reserved", "confirmed", "confirmed"),
        ("confirmed", "fulfilled", "fulfilled"),
    ]
    level = stock(product)
    assert (level.on_hand, level.reserved, level.committed, level.available) == (6, 0, 0, 6)
    assert warehouse_sim.stock()[product.sku] == (6, 2)
    charge = payment_sim.charge(order.payment.idempotency_key)
    assert charge["status"] == "captured" and charge["amount"] == "50.00"
    assert order.payment.status == "captured"
    assert order.payment.provider_reference == charge["id"]


@pytest.mark.embedded
def test_decline_releases_stock_and_fails_the_order(customer, payment_sim):
    # given
    product = product_with_stock(5)
    order = place_order(customer, (product.id, 2))
    payment_sim.script("decline")

    # when
    run_to_completion(order.id)

    # then
    order.refresh_from_db()
    assert (order.status, order.failure_reason) == ("failed", "payment_declined")
    assert log_events(order)[-1] == ("reserved", "failed", "payment_declined")
    level = stock(product)
    assert (level.reserved, level.committed, level.available) == (0, 0, 5)
    assert order.payment.status == "declined"


def test_5xx_is_retried_and_charges_exactly_once(customer, payment_sim):
    product = product_with_stock(5)
    order = place_order(customer, (product.id, 1))
    payment_sim.script("error", "error")

    delays = run_to_completion(order.id)

    order.refresh_from_db()
    assert order.status == "confirmed"
    assert len(delays) == 2 and delays[0] < delays[1]
    assert [e for e in log_events(order) if e[2] == "payment_retry"] == [
        ("reserved", "reserved", "payment_retry")
    ] * 2
    key = order.payment.idempotency_key
    asked = [r["kind"] for r in payment_sim.requests()]
    assert asked == ["charge", "lookup", "charge", "lookup", "charge"]  # one key, looked up first
    assert {r["idempotency_key"] for r in payment_sim.requests()} == {key}
    assert payment_sim.stats()["captured"] == 1
    assert order.payment.attempts == 3


def test_timeout_after_the_charge_was_stored_is_resolved_by_lookup_not_a_second_charge(
    customer, payment_sim
):
    # given: the service stores the capture, then answers too late for our read timeout
    product = product_with_stock(5)
    order = place_order(customer, (product.id, 1))
    payment_sim.script("timeout")

    # when
    delays = run_to_completion(order.id)

    # then: one retry, which found the charge by its key instead of charging again
    order.refresh_from_db()
    assert order.status == "confirmed"
    assert len(delays) == 1
    key = order.payment.idempotency_key
    # the only charge request ever made; the retry asked for it by its key
    assert [(r["idempotency_key"], r["kind"]) for r in payment_sim.requests()] == [
        (key, "charge"),
        (key, "lookup"),
    ]
    assert payment_sim.stats()["captured"] == 1
    assert "ReadTimeout" in order.logs.get(event="payment_retry").data["error"]


@pytest.mark.embedded
def test_out_of_stock_is_retried_with_growing_delays_then_fails(customer, payment_sim, settings):
    product = product_with_stock(1)
    order = place_order(customer, (product.id, 2))

    delays = run_to_completion(order.id)

    order.refresh_from_db()
    assert (order.status, order.failure_reason) == ("failed", "out_of_stock")
    assert len(delays) == settings.ORDER_STOCK_RETRY_MAX
    for attempt, delay in enumerate(delays):
        floor = settings.ORDER_STOCK_RETRY_BASE_SECONDS * 2**attempt
        # the delay is rounded to the millisecond, so the jitter's open upper end can round up
        # onto the bound itself
        assert floor <= delay <= floor * (1 + settings.ORDER_RETRY_JITTER)
    assert delays == sorted(delays) and len(set(delays)) == len(delays)
    retries = order.logs.filter(event="stock_retry").order_by("id")
    assert [r.data["attempt"] for r in retries] == list(range(1, len(delays) + 1))
    assert stock(product).reserved == 0
    assert payment_sim.charge(order.payment.idempotency_key) is None  # never charged
    assert order.payment.status == "voided"  # and never will be


def test_restocked_within_the_retry_window_is_confirmed(customer, payment_sim):
    product = product_with_stock(0)
    order = place_order(customer, (product.id, 2))
    assert not advance(order.id)[order.id].done

    stock_set_from_warehouse(product_id=product.id, on_hand=3, version=2)
    step = advance(order.id)[order.id]

    order.refresh_from_db()
    assert step.done and order.status == "confirmed"
    assert stock(product).committed == 2


def test_running_the_workflow_again_changes_nothing(customer, payment_sim, warehouse_sim):
    # given: a fulfilled order
    product = product_in_warehouse(warehouse_sim, 5)
    order = place_order(customer, (product.id, 2))
    run_to_completion(order.id)
    before = (
        log_events(order),
        stock(product).on_hand,
        payment_sim.stats()["charge_requests"],
        warehouse_sim.shipments()["count"],
    )

    # when: the task runs again (a duplicate or redelivered message)
    assert advance(order.id)[order.id].done
    assert advance(order.id)[order.id].done

    # then
    order.refresh_from_db()
    assert order.status == "fulfilled"
    assert (
        log_events(order),
        stock(product).on_hand,
        payment_sim.stats()["charge_requests"],
        warehouse_sim.shipments()["count"],
    ) == before


@pytest.mark.embedded
def test_a_repeated_transition_is_a_noop_and_an_illegal_one_raises(customer, payment_sim):
    product = product_with_stock(5)
    order = place_order(customer, (product.id, 1))
    run_to_completion(order.id)
    order = Order.objects.select_related("payment").get(pk=order.pk)
    logs = order.logs.count()

    # repeated: no-op
    assert not order_transition(
        orders=[order], event=OrderEvent.CONFIRMED, source=OrderStatus.RESERVED
    )
    assert reserve(order) is False  # decided for a state it is no longer in
    assert order.logs.count() == logs
    assert stock(product).committed == 1

    with pytest.raises(IllegalTransition):  # confirmed -> reserved is not a transition
        order_transition(orders=[order], event=OrderEvent.RESERVED, source=OrderStatus.CONFIRMED)
    assert stock(product).reserved == 0 and order.logs.count() == logs
