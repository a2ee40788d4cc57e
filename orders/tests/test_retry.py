"""Operator actions as services: retrying a failed order, pushing a confirmed one again."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.services import stock_set_from_warehouse
from inventory.tests.factories import product_with_stock
from orders.interventions import (
    OrderNotConfirmed,
    OrderNotRetryable,
    order_repush_fulfilment,
    order_retry,
)
from orders.models import Order, OrderEvent, OrderStatus
from orders.selectors import stock_discrepancies
from orders.tests import helpers
from orders.tests.helpers import (
    advance,
    log_events,
    place_order,
    reserve,
    run_to_completion,
)
from orders.transitions import IllegalTransition, order_transition
from payments.models import Payment
from tests.live import queue_length

# order_retry may look a payment up over HTTP, which it refuses to do inside a transaction.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def declined_order(customer, payment_sim) -> Order:
    product = product_with_stock(5, sku="RETRY-ME")
    order = place_order(customer, (product.id, 2))
    payment_sim.script("decline")
    run_to_completion(order.id)
    order.refresh_from_db()
    assert (order.status, order.failure_reason) == ("failed", "payment_declined")
    return order


def test_retried_declined_order_gets_a_new_payment_and_is_confirmed(
    declined_order, payment_sim, staff_user
):
    # given
    old_payment = declined_order.payment
    queued_before = queue_length()

    # when
    retried = order_retry(order=declined_order, actor=staff_user)

    # then: pending again with a new payment, its processing published after the commit
    assert (retried.status, retried.failure_reason) == ("pending", "")
    order = Order.objects.select_related("payment").get(pk=declined_order.pk)
    assert order.payment_id != old_payment.pk
    assert order.payment.idempotency_key != old_payment.idempotency_key
    assert (order.payment.status, order.payment.amount) == ("pending", order.total)
    assert queue_length() == queued_before + 1
    # the old payment is kept, and named in the log with who retried
    old_payment.refresh_from_db()
    assert old_payment.status == "declined"
    entry = order.logs.get(event="retried")
    assert (entry.from_status, entry.to_status) == ("failed", "pending")
    assert entry.actor == staff_user
    assert entry.data["previous_failure_reason"] == "payment_declined"
    assert entry.data["previous_payment"]["id"] == old_payment.pk
    assert entry.data["previous_payment"]["provider_reference"] == old_payment.provider_reference

    # when: processed again, the new key is charged (the old one keeps its decline)
    run_to_completion(order.id)

    # then
    order.refresh_from_db()
    assert order.status == "confirmed"
    assert [e for e in log_events(order) if e[0] != e[1]][-4:] == [
        ("reserved", "failed", "payment_declined"),
        ("failed", "pending", "retried"),
        ("pending", "reserved", "reserved"),
        ("reserved", "confirmed", "confirmed"),
    ]
    assert payment_sim.charge(order.payment.idempotency_key)["status"] == "captured"
    assert payment_sim.charge(old_payment.idempotency_key)["status"] == "declined"
    assert stock_discrepancies() == []


def test_the_workflow_can_never_reopen_a_failed_order(declined_order):
    # the workflow's own steps leave it failed
    assert advance(declined_order.pk)[declined_order.pk].done
    assert reserve(declined_order) is False
    # and the table has no way from failed back to work but an operator's retry
    with pytest.raises(IllegalTransition):
        order_transition(
            orders=[declined_order], event=OrderEvent.RESERVED, source=OrderStatus.FAILED
        )
    declined_order.refresh_from_db()
    assert declined_order.status == "failed"
    assert (
        not declined_order.logs.filter(event__in=["reserved", "retried"])
        .exclude(from_status="pending")
        .exists()
    )


def test_only_a_failed_order_can_be_retried(customer, payment_sim, staff_user):
    order = place_order(customer, (product_with_stock(5).id, 1))
    run_to_completion(order.id)

    with pytest.raises(OrderNotRetryable, match="it is confirmed"):
        order_retry(order=order, actor=staff_user)

    order.refresh_from_db()
    assert order.status == "confirmed"
    assert Payment.objects.count() == 1


def test_a_failed_order_whose_charge_was_captured_is_not_retried(customer, payment_sim, staff_user):
    # given: the charge's answer was lost (the provider captured it) and the order was
    # failed anyway, as a payment error, a while ago
    order = place_order(customer, (product_with_stock(5).id, 1))
    reserve(order)
    payment_sim.script("timeout")
    assert helpers.try_payment(order.payment).status == "in_doubt"
    order_transition(
        orders=[order],
        event=OrderEvent.PAYMENT_ERROR,
        source=OrderStatus.RESERVED,
        message="Given up.",
    )
    Payment.objects.filter(pk=order.payment_id).update(
        last_attempt_at=timezone.now() - timedelta(minutes=5)
    )

    # when
    with pytest.raises(OrderNotRetryable, match="was captured"):
        order_retry(order=order, actor=staff_user)

    # then: the lookup by key found the capture, and the order was left as it was
    order.refresh_from_db()
    order.payment.refresh_from_db()
    assert (order.status, order.payment.status) == ("failed", "captured")
    assert Payment.objects.count() == 1


def test_repush_publishes_fulfilment_of_a_confirmed_order_only(customer, payment_sim, staff_user):
    confirmed = place_order(customer, (product_with_stock(5).id, 1))
    run_to_completion(confirmed.id)
    pending = place_order(customer, (product_with_stock(5).id, 1))
    queued_before = queue_length()

    order_repush_fulfilment(order=confirmed, actor=staff_user)
    with pytest.raises(OrderNotConfirmed):
        order_repush_fulfilment(order=pending, actor=staff_user)

    assert queue_length() == queued_before + 1
    entry = confirmed.logs.get(event="fulfilment_repushed")
    assert (entry.from_status, entry.to_status, entry.actor) == (
        "confirmed",
        "confirmed",
        staff_user,
    )
    assert not pending.logs.filter(event="fulfilment_repushed").exists()


def test_an_order_failed_out_of_stock_is_retried_once_restocked(customer, payment_sim, staff_user):
    # given: failed out of stock, never charged
    product = product_with_stock(1)
    order = place_order(customer, (product.id, 3))
    run_to_completion(order.id)
    order.refresh_from_db()
    assert (order.status, order.failure_reason) == ("failed", "out_of_stock")
    stock_set_from_warehouse(product_id=product.id, on_hand=10, version=2)

    # when
    order_retry(order=order, actor=staff_user)
    run_to_completion(order.id)

    # then: confirmed; the old, never attempted payment (voided when the order failed) was
    # not even looked up
    order.refresh_from_db()
    assert order.status == "confirmed"
    old = order.logs.get(event="retried").data["previous_payment"]
    assert old["status"] == "voided"
    assert payment_sim.stats(key=old["idempotency_key"])["by_key"] == {}
    assert stock_discrepancies() == []
