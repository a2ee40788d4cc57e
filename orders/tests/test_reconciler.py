"""The reconciler against real PostgreSQL, Redis and the payment simulator over HTTP. Time is
moved by passing `now`, not by waiting."""

import pytest
from django.core.management import CommandError, call_command

from inventory.models import StockLevel
from inventory.tests.factories import product_with_stock
from orders.models import Order
from orders.reconciler import reconcile
from orders.tests.helpers import (
    capture_at_provider,
    later,
    log_events,
    place_order,
    reserve,
    run_to_completion,
)
from payments.gateway import get_gateway
from payments.models import Payment, PaymentStatus
from tests.live import queue_length

pytestmark = pytest.mark.django_db(transaction=True)


def reserved_order(customer, *, on_hand: int = 5, quantity: int = 2) -> Order:
    product = product_with_stock(on_hand)
    order = place_order(customer, (product.id, quantity))
    order = Order.objects.select_related("payment").get(pk=order.pk)
    reserve(order)
    return order


def charge_at_provider(payment: Payment) -> None:
    """The provider stored a capture whose answer we never got."""
    capture_at_provider(payment)
    Payment.objects.filter(pk=payment.pk).update(attempts=1, status=PaymentStatus.IN_DOUBT)


def test_a_pending_order_whose_publish_was_lost_is_published_again(customer, payment_sim, settings):
    # given: an order saved, its message never published (broker down at the time)
    order = place_order(customer, (product_with_stock(5).id, 1))
    queued = queue_length()

    # when: nothing happens for longer than the threshold
    assert reconcile().requeued == 0  # not stuck yet
    report = reconcile(now=later(settings.ORDER_STUCK_AFTER_SECONDS + 1))

    # then: published again, and logged on the order
    assert report.requeued == 1
    assert queue_length() == queued + 1
    assert log_events(order)[-1] == ("pending", "pending", "requeued")
    run_to_completion(order.id)
    order.refresh_from_db()
    assert order.status == "confirmed"


def test_a_payment_in_doubt_is_settled_by_lookup_never_by_charging_again(
    customer, payment_sim, settings
):
    order = reserved_order(customer)
    charge_at_provider(order.payment)

    report = reconcile(now=later(settings.ORDER_STUCK_AFTER_SECONDS + 1))

    order.refresh_from_db()
    assert report.confirmed == 1 and order.status == "confirmed"
    events = [e[2] for e in log_events(order)]
    assert events[-2:] == ["payment_looked_up", "confirmed"]
    assert payment_sim.stats()["charge_requests"] == 1
    assert StockLevel.objects.get(product=order.lines.get().product).committed == 2


@pytest.mark.embedded
def test_an_expired_reservation_never_charged_is_released(customer, payment_sim, settings):
    order = reserved_order(customer)

    report = reconcile(now=later(settings.ORDER_RESERVATION_TTL_SECONDS + 1))

    order.refresh_from_db()
    assert report.expired == 1
    assert (order.status, order.failure_reason) == ("failed", "reservation_expired")
    assert StockLevel.objects.get(product=order.lines.get().product).reserved == 0


def test_an_expired_reservation_whose_charge_is_unknown_is_released_and_kept_under_watch(
    customer, payment_sim, settings
):
    # given: a reserved order whose charge is in doubt, and a payment service out of reach
    order = reserved_order(customer)
    Payment.objects.filter(pk=order.payment_id).update(attempts=1, status="in_doubt")
    settings.PAYMENT_API_URL = "http://127.0.0.1:9/unreachable"
    get_gateway.cache_clear()

    # when: its reservation's time is up
    report = reconcile(now=later(settings.ORDER_RESERVATION_TTL_SECONDS + 1))

    # then: the stock goes back whatever the provider would say; the payment stays in doubt,
    # abandoned, for the reconciler to settle once the provider answers
    order.refresh_from_db()
    assert report.expired == 1 and report.still_in_doubt >= 1
    assert (order.status, order.failure_reason) == ("failed", "reservation_expired")
    assert StockLevel.objects.get(product=order.lines.get().product).reserved == 0
    payment = Payment.objects.get(pk=order.payment_id)
    assert payment.status == "in_doubt" and payment.abandoned_at is not None


@pytest.mark.embedded
def test_a_capture_arriving_after_the_order_failed_is_refunded(customer, payment_sim, settings):
    # given: expired as "not charged", then the provider's capture shows up after all
    order = reserved_order(customer)
    Payment.objects.filter(pk=order.payment_id).update(attempts=1, status="not_charged")
    reconcile(now=later(settings.ORDER_RESERVATION_TTL_SECONDS + 1))
    charge_at_provider(order.payment)

    # when: the next look at it (one recheck interval later)
    report = reconcile(
        now=later(settings.ORDER_RESERVATION_TTL_SECONDS + settings.ORDER_STUCK_AFTER_SECONDS + 2)
    )

    # then
    order.refresh_from_db()
    assert report.refunded == 1
    assert order.status == "failed" and order.payment.status == "refunded"
    assert payment_sim.charge(order.payment.idempotency_key)["status"] == "refunded"
    assert log_events(order)[-1] == ("failed", "failed", "refunded")


def test_a_confirmed_order_the_warehouse_never_acknowledged_is_pushed_again(
    customer, payment_sim, settings
):
    order = place_order(customer, (product_with_stock(5).id, 1))
    run_to_completion(order.id)
    queued = queue_length()

    report = reconcile(now=later(settings.ORDER_STUCK_AFTER_SECONDS + 1))

    assert report.repushed == 1 and queue_length() == queued + 1
    assert log_events(order)[-1] == ("confirmed", "confirmed", "fulfilment_repushed")


@pytest.mark.embedded
def test_two_passes_at_once_do_not_double_anything(customer, payment_sim, settings):
    from core.leases import lease_acquire, lease_release

    # given: an order idle for longer than the threshold
    order = place_order(customer, (product_with_stock(5).id, 1))
    Order.objects.filter(pk=order.pk).update(
        progressed_at=later(-settings.ORDER_STUCK_AFTER_SECONDS - 1)
    )

    # when: another beat's pass holds the lease, ours skips
    assert lease_acquire(name="reconciler", holder="other-beat", seconds=60)
    try:
        assert reconcile().skipped
    finally:
        lease_release(name="reconciler", holder="other-beat")
    # and two passes one after the other
    first, second = reconcile(), reconcile()

    # then: the order was published again once (the requeue counts as activity)
    assert (first.requeued, second.requeued) == (1, 0)
    assert [e[2] for e in log_events(order)].count("requeued") == 1


def test_audit_stock_is_clean_then_reports_violations_and_fails(customer, payment_sim, capsys):
    order = place_order(customer, (product_with_stock(5).id, 2))
    run_to_completion(order.id)

    call_command("audit_stock", "--with-provider")
    assert "clean" in capsys.readouterr().out

    StockLevel.objects.filter(product=order.lines.get().product).update(committed=5)
    Order.objects.filter(pk=order.pk).update(status="cancelled")
    with pytest.raises(CommandError, match="violation"):
        call_command("audit_stock", "--with-provider")
    out = capsys.readouterr().out
    assert "committed 5 != 0 held by confirmed orders" in out
    assert "keeps a capture" in out and "unrefunded capture" in out


def test_a_capture_on_a_payment_replaced_by_an_operator_retry_is_refunded(
    customer, payment_sim, settings, staff_user
):
    from orders.interventions import order_retry

    # given: a failed order retried by an operator; its old charge request was on its way
    order = place_order(customer, (product_with_stock(0).id, 1))
    settings.ORDER_STOCK_RETRY_MAX = 0
    run_to_completion(order.id)
    order.refresh_from_db()
    old_payment = order.payment
    Payment.objects.filter(pk=old_payment.pk).update(
        attempts=1, status="not_charged", last_attempt_at=later(-60)
    )
    order_retry(order=order, actor=staff_user)
    charge_at_provider(Payment.objects.get(pk=old_payment.pk))  # lands after the retry

    # when
    report = reconcile()

    # then: refunded, and said on the order
    assert report.refunded == 1
    assert payment_sim.charge(old_payment.idempotency_key)["status"] == "refunded"
    assert Order.objects.get(pk=order.pk).logs.filter(event="refunded").exists()


def test_an_operator_retry_starts_a_new_stock_retry_budget(
    customer, payment_sim, settings, staff_user
):
    from orders.interventions import order_retry

    order = place_order(customer, (product_with_stock(0).id, 1))
    run_to_completion(order.id)  # out of stock after ORDER_STOCK_RETRY_MAX retries
    order.refresh_from_db()
    assert order.stock_attempts == settings.ORDER_STOCK_RETRY_MAX

    order_retry(order=order, actor=staff_user)

    order.refresh_from_db()
    assert order.stock_attempts == 0
