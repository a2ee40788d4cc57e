"""Interleavings of workers, customers, operators and the reconciler that a review found
unsafe, each reproduced exactly: an actor is stopped at a named checkpoint (tests/interleave.py)
while another runs. A worker always runs a batch: the order the interleaving is about and
bystanders beside it, and the test asserts every one's outcome. Real PostgreSQL; the payment
service and the warehouse over HTTP."""

import contextlib
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from inventory.models import StockLevel
from inventory.tests.factories import product_in_warehouse, product_with_stock
from inventory.types import WarehouseUnavailable
from orders.interventions import OrderNotRetryable, order_retry
from orders.models import Order, OrderEvent, OrderStatus
from orders.reconciler import reconcile
from orders.tests.conftest import Background
from orders.tests.helpers import (
    advance,
    confirm_order,
    later,
    place_order,
    reserve,
    run_to_completion,
    try_payment,
)
from orders.transitions import order_transition
from payments.gateway import get_gateway
from payments.models import Payment
from payments.services import payment_lookup
from tests.interleave import Inject, Pause, raise_
from tests.processes import free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def provider_unreachable(settings) -> str:
    """Point the payment client at a port nobody listens on; returns the working URL."""
    working = settings.PAYMENT_API_URL
    settings.PAYMENT_API_URL = f"http://127.0.0.1:{free_port()}/payments"
    get_gateway.cache_clear()
    return working


def provider_back(settings, url: str) -> None:
    settings.PAYMENT_API_URL = url
    get_gateway.cache_clear()


def load(order_id: int) -> Order:
    return Order.objects.select_related("payment").get(pk=order_id)


def reserved_order(customer, *, on_hand: int = 5, quantity: int = 1) -> Order:
    order = place_order(customer, (product_with_stock(on_hand).id, quantity))
    order = load(order.pk)
    reserve(order)
    return order


def bystanders(customer, n: int = 2) -> list[int]:
    """New orders (in stock, of products the warehouse does not know: they end confirmed,
    their push refused) to put in a batch beside the order an interleaving is about."""
    return [place_order(customer, (product_with_stock(10).id, 1)).pk for _ in range(n)]


def confirmed(*order_ids: int) -> bool:
    return all(load(pk).status == "confirmed" for pk in order_ids)


def failed_with_a_lost_capture(customer, payment_sim) -> Order:
    """A reserved order whose charge was captured with its answer lost, failed afterwards as
    a payment error (its payment in doubt, abandoned with the order)."""
    order = reserved_order(customer)
    payment_sim.script("timeout")
    assert try_payment(order.payment).status == "in_doubt"
    assert order_transition(
        orders=[order],
        event=OrderEvent.PAYMENT_ERROR,
        source=OrderStatus.RESERVED,
        message="Given up.",
    )
    return load(order.pk)


def reserved(product) -> int:
    return StockLevel.objects.get(product=product).reserved


# --- 1. the reconciler guards each order ---------------------------------------------------


def test_one_order_the_reconciler_cannot_settle_does_not_end_its_pass(
    customer, payment_sim, settings
):
    # given, idle past the threshold, lowest id first: a reserved order whose charge is in
    # doubt and whose lookup the provider refuses (401) ...
    refused = reserved_order(customer)
    Payment.objects.filter(pk=refused.payment_id).update(attempts=1, status="in_doubt")
    payment_sim.fail_next("lookup", 401)
    # ... a pending order whose publish was lost ...
    lost = place_order(customer, (product_with_stock(5).id, 1))
    # ... and a failed order whose payment was captured after all
    captured = failed_with_a_lost_capture(customer, payment_sim)

    # when
    report = reconcile(now=later(settings.ORDER_STUCK_AFTER_SECONDS + 1))

    # then: the refused lookup was counted and skipped; the rest of the pass ran
    assert report.still_in_doubt == 1
    assert report.requeued == 1
    assert report.refunded == 1
    assert payment_sim.charge(captured.payment.idempotency_key)["status"] == "refunded"
    assert load(refused.pk).status == "reserved"
    assert load(lost.pk).logs.filter(event="requeued").exists()


# --- 2. a cancel never refunds an order the warehouse shipped ---------------------------------


def test_a_cancel_after_a_shipment_whose_answer_was_lost_never_refunds_a_shipped_order(
    customer, customer_client, payment_sim, warehouse_sim
):
    # given: a confirmed order the warehouse shipped in a batch with another, whose answer
    # was lost on the way back
    product = product_in_warehouse(warehouse_sim, 10)
    order = confirm_order(place_order(customer, (product.id, 1)).id)
    beside = confirm_order(place_order(customer, (product.id, 1)).id)
    lost = raise_(WarehouseUnavailable("ReadTimeout: the answer was lost"))
    with Inject("order.ship.answered", lost, order_id=order.pk):
        steps = advance(order.pk, beside.pk)
    assert not steps[order.pk].done and not steps[beside.pk].done  # pushes to be retried
    assert warehouse_sim.shipments()["count"] == 2

    # when: the customer cancels one, then the pushes are retried
    response = customer_client.post(f"/api/orders/{order.pk}/cancel/")
    advance(order.pk, beside.pk)

    # then: the other one is fulfilled, shipped once
    assert load(beside.pk).status == "fulfilled"
    assert warehouse_sim.shipments()["count"] == 2
    # and the cancel was refused (it has shipped), the order is fulfilled, the charge kept
    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "order_not_cancellable"
    order = load(order.pk)
    assert order.status == "fulfilled"
    assert payment_sim.charge(order.payment.idempotency_key)["status"] == "captured"
    assert StockLevel.objects.get(product=product).committed == 0


# --- 3. a provider outage: bounded retries with backoff, and the reservation TTL -------------


def test_payment_retries_in_a_provider_outage_are_bounded_and_back_off(
    customer, payment_sim, settings
):
    # given: three orders whose charges' answers were lost, then the payment service goes away
    orders = [place_order(customer, (product_with_stock(5).id, 1)).pk for _ in range(3)]
    payment_sim.script("timeout", "timeout", "timeout")
    first = advance(*orders)
    assert not any(step.done for step in first.values())
    assert {load(pk).payment.status for pk in orders} == {"in_doubt"}
    provider_unreachable(settings)

    # when: the engine takes the batch up again each time they are due, as workers do
    delays = {pk: [first[pk].retry_in] for pk in orders}
    waiting = list(orders)
    for _ in range(3 * settings.ORDER_PAYMENT_RETRY_MAX):
        steps = advance(*waiting)
        for pk in waiting:
            if not steps[pk].done:
                delays[pk].append(steps[pk].retry_in)
        waiting = [pk for pk in waiting if not steps[pk].done]
        if not waiting:
            break

    # then: each stopped asking within its budget, each wait longer than the one before
    assert not waiting, f"still retrying after {len(delays[waiting[0]])} calls: {delays}"
    for pk in orders:
        assert len(delays[pk]) <= settings.ORDER_PAYMENT_RETRY_MAX
        assert all(b > a for a, b in itertools.pairwise(delays[pk])), delays[pk]
        assert load(pk).payment.tries == settings.ORDER_PAYMENT_RETRY_MAX


def test_a_reservation_expires_during_a_provider_outage_and_a_late_capture_is_refunded(
    customer, payment_sim, settings
):
    # given: a reserved order whose charge was captured, its answer lost; then the payment
    # service goes away
    product = product_with_stock(5)
    order = place_order(customer, (product.id, 2))
    others = bystanders(customer)
    payment_sim.script("timeout", key=load(order.pk).payment.idempotency_key)
    advance(order.pk, *others)
    assert confirmed(*others)
    working = provider_unreachable(settings)

    # when: the reservation's time is up while the provider still does not answer
    reconcile(now=later(settings.ORDER_RESERVATION_TTL_SECONDS + 1))

    # then: the stock is released, the order failed as expired
    order = load(order.pk)
    assert (order.status, order.failure_reason) == ("failed", "reservation_expired")
    assert reserved(product) == 0

    # and once the provider answers again, the capture it holds is refunded
    provider_back(settings, working)
    reconcile(
        now=later(settings.ORDER_RESERVATION_TTL_SECONDS + settings.ORDER_STUCK_AFTER_SECONDS + 2)
    )
    assert payment_sim.charge(order.payment.idempotency_key)["status"] == "refunded"


# --- 4. a late capture of a replaced payment ------------------------------------------------


@contextmanager
def charging_in_background(order: Order) -> Iterator[Background]:
    """A worker processing the order, stopped just before its charge request goes out until
    the block ends."""
    others = bystanders(order.customer)
    with Pause("payment.charge.sending", payment_id=load(order.pk).payment_id) as charging:
        worker = Background(lambda: advance(order.pk, *others))
        charging.wait_reached()
        # the others' charges were answered meanwhile: their orders went on
        wait_for(lambda: confirmed(*others), timeout=10, message="the bystanders confirmed")
        yield worker


@contextmanager
def a_replaced_payment_being_charged(customer, staff_user, settings):
    """A worker about to send the charge of an order's payment P1, and stalled there (for
    longer than a request may take: an operator's retry no longer waits for it), while the
    reservation expires (the provider has no charge for P1 yet), an operator retries the
    order with a new payment P2, and it is reserved again. Yields (order, P1, the worker),
    the worker let go when the block ends."""
    order = place_order(customer, (product_with_stock(5).id, 1))
    p1 = load(order.pk).payment
    with charging_in_background(order) as slow:
        Payment.objects.filter(pk=p1.pk).update(last_attempt_at=later(-3600))
        reconcile(now=later(settings.ORDER_RESERVATION_TTL_SECONDS + 1))
        assert load(order.pk).status == "failed"
        order_retry(order=load(order.pk), actor=staff_user)
        reserve(load(order.pk))
        yield order, p1, slow


def test_a_late_capture_of_a_replaced_payment_never_confirms_the_order(
    customer, payment_sim, settings, staff_user
):
    # given: a stalled worker's P1 replaced by P2, the order reserved again
    with a_replaced_payment_being_charged(customer, staff_user, settings) as (order, p1, slow):
        pass

    # when: P1's charge goes out and is captured, and the order's processing runs on
    slow.result()
    run_to_completion(order.pk)
    reconcile(now=later(settings.ORDER_RESERVATION_TTL_SECONDS + 2))

    # then: the order was paid by P2; P1's capture was refunded
    order = load(order.pk)
    assert order.payment_id != p1.pk
    assert order.status == "confirmed"
    assert order.payment.status == "captured"
    assert payment_sim.charge(order.payment.idempotency_key)["status"] == "captured"
    assert payment_sim.charge(p1.idempotency_key)["status"] == "refunded"


def test_a_decline_of_a_replaced_payment_never_fails_the_order(
    customer, payment_sim, settings, staff_user
):
    # given: as above, a stalled worker's P1 replaced by P2, the order reserved again
    with a_replaced_payment_being_charged(customer, staff_user, settings) as (order, p1, slow):
        payment_sim.script("decline")  # what the provider answers P1

    # when: P1's charge goes out and is declined
    slow.result()

    # then: the decline was P1's; the order, reserved with P2, went on (the same worker judged
    # it again and charged P2) and is confirmed
    assert Payment.objects.get(pk=p1.pk).status == "declined"
    assert not load(order.pk).logs.filter(event="payment_declined").exists()
    run_to_completion(order.pk)
    order = load(order.pk)
    assert (order.status, order.payment.status) == ("confirmed", "captured")


def test_an_operator_retry_waits_while_the_last_charge_may_still_be_on_its_way(
    customer, payment_sim, settings, staff_user
):
    # given: a worker stands at its charge request; the order fails meanwhile
    order = place_order(customer, (product_with_stock(5).id, 1))
    p1 = load(order.pk).payment
    with charging_in_background(order) as slow:
        reconcile(now=later(settings.ORDER_RESERVATION_TTL_SECONDS + 1))

        # when: an operator retries it, the provider having no charge for P1 (yet)
        with pytest.raises(OrderNotRetryable, match="may still be on its way"):
            order_retry(order=load(order.pk), actor=staff_user)
    slow.result()

    # then: refused; the order keeps its payment, whose capture is refunded
    order = load(order.pk)
    assert (order.status, order.payment_id) == ("failed", p1.pk)
    reconcile(now=later(settings.ORDER_RESERVATION_TTL_SECONDS + 2))
    assert payment_sim.charge(p1.idempotency_key)["status"] == "refunded"


# --- 5. 409 (and 408, 429) on a charge are not a refusal --------------------------------------


def test_a_409_for_a_charge_still_being_processed_leaves_it_in_doubt(customer, payment_sim):
    # given: a charge the provider is still processing when our read timeout gives up
    order = reserved_order(customer)
    key = order.payment.idempotency_key
    payment_sim.configure(hold_charges=True)
    first = advance(order.pk)[order.pk]
    assert not first.done and load(order.pk).payment.status == "in_doubt"
    others = bystanders(customer)

    # when: in a batch with new orders, the retry finds no charge yet, charges again, and is
    # answered 409 (key in use)
    second = advance(order.pk, *others)[order.pk]

    # then: a 409 is no answer either: the order waits, it does not fail
    assert [r["kind"] for r in payment_sim.requests(key)] == ["charge", "lookup", "charge"]
    assert not second.done
    assert load(order.pk).status == "reserved"

    # and once the provider has finished the first request, its capture confirms the order,
    # and the others' first charges, held with it, confirm them
    payment_sim.configure(hold_charges=False)
    wait_for(lambda: payment_sim.charge(key), timeout=10, message="the held charge stored")
    for _ in range(4):
        if advance(order.pk, *others)[order.pk].done and confirmed(*others):
            break
    assert load(order.pk).status == "confirmed"
    assert confirmed(*others)
    assert payment_sim.charge(key)["status"] == "captured"
    assert [r["kind"] for r in payment_sim.requests(key)].count("charge") == 2


@pytest.mark.parametrize("status", [408, 409, 425, 429])
def test_a_charge_answered_with_a_status_that_says_try_again_is_in_doubt(
    customer, payment_sim, status
):
    order = reserved_order(customer)
    others = bystanders(customer)
    payment_sim.fail_next("charge", status, key=order.payment.idempotency_key)

    step = advance(order.pk, *others)[order.pk]

    assert not step.done
    order = load(order.pk)
    assert (order.status, order.payment.status) == ("reserved", "in_doubt")
    assert confirmed(*others)


# --- 6. the reconciler's windows and its fairness ------------------------------------------


def test_an_in_doubt_payment_of_an_order_failed_long_ago_is_still_settled(
    customer, payment_sim, settings
):
    # given: an order failed two hours ago; its charge, in doubt then, was captured
    order = failed_with_a_lost_capture(customer, payment_sim)
    long_ago = timezone.now() - timedelta(hours=2)
    Order.objects.filter(pk=order.pk).update(updated_at=long_ago, progressed_at=long_ago)
    Payment.objects.filter(pk=order.payment_id).update(
        updated_at=long_ago, last_attempt_at=long_ago, abandoned_at=long_ago
    )

    # when
    reconcile()

    # then: looked up and refunded, however long ago the order failed
    assert payment_sim.charge(order.payment.idempotency_key)["status"] == "refunded"


def test_a_replaced_payment_is_looked_up_only_within_the_window_after_its_charge(
    customer, payment_sim, settings, staff_user
):
    # given: a payment replaced by an operator's retry, last charged 50 minutes ago
    settings.ORDER_STOCK_RETRY_MAX = 0
    order = place_order(customer, (product_with_stock(0).id, 1))
    run_to_completion(order.pk)
    p1 = load(order.pk).payment
    order_retry(order=load(order.pk), actor=staff_user)
    window = settings.ORDER_LATE_CAPTURE_WINDOW_SECONDS
    charged_at = timezone.now() - timedelta(seconds=window - 600)
    Payment.objects.filter(pk=p1.pk).update(attempts=1, status="not_charged", updated_at=charged_at)
    mark_charged_at(p1, charged_at)

    # when: a pass now, and one 20 minutes later (past the window after its charge)
    reconcile(now=later(settings.ORDER_STUCK_AFTER_SECONDS + 1))
    reconcile(now=later(20 * 60))

    # then: it was looked up once, in the window, not again after it
    assert len(payment_sim.requests(p1.idempotency_key, "lookup")) == 1


def mark_charged_at(payment: Payment, when) -> None:
    """When the payment's last charge request went out (where the model records it)."""
    fields = {f.name for f in Payment._meta.get_fields()}
    if "last_attempt_at" in fields:
        Payment.objects.filter(pk=payment.pk).update(last_attempt_at=when)


def test_refunds_the_provider_keeps_refusing_do_not_starve_the_others(
    customer, payment_sim, settings
):
    # given: a pass handles two payments; two failed orders whose refunds the provider
    # refuses every time come first, and a third failed order keeps a capture
    settings.RECONCILE_BATCH_SIZE = 2
    refused = [failed_with_a_lost_capture(customer, payment_sim) for _ in range(2)]
    kept = failed_with_a_lost_capture(customer, payment_sim)
    for order in refused:
        payment_sim.fail_next("refund", 403, times=100, key=order.payment.idempotency_key)

    # when: three passes, a recheck interval apart
    for n in range(1, 4):
        reconcile(now=later(n * (settings.ORDER_STUCK_AFTER_SECONDS + 1)))

    # then: the third order's capture was refunded too
    assert payment_sim.charge(kept.payment.idempotency_key)["status"] == "refunded"


def test_a_pass_cut_by_its_time_limit_goes_on_with_the_next_orders(customer, payment_sim, settings):
    # given: three reserved orders whose charges are in doubt, the provider down, and passes
    # cut by the soft time limit as they reach their second order
    orders = [reserved_order(customer) for _ in range(3)]
    Payment.objects.filter(pk__in=[o.payment_id for o in orders]).update(
        attempts=1, status="in_doubt"
    )
    provider_unreachable(settings)
    visits: list[list[int]] = []

    def cut_at_second_order(context) -> None:
        visits[-1].append(context["order_id"])
        if len(visits[-1]) == 2:
            raise SoftTimeLimitExceeded()

    # when: three passes
    with Inject("reconciler.order", cut_at_second_order, times=1000):
        for _ in range(3):
            visits.append([])
            with contextlib.suppress(SoftTimeLimitExceeded):  # a pass may also stop by itself
                reconcile(now=later(settings.ORDER_STUCK_AFTER_SECONDS + 1))

    # then: every order was reached
    assert {o.pk for o in orders} <= set(itertools.chain(*visits)), visits


# --- 7. a failure decided for one state is never applied to another --------------------------


def test_an_out_of_stock_decision_never_fails_an_order_another_worker_reserved(
    customer, payment_sim, settings
):
    # given: worker A, on its last stock attempt, has decided the order is out of stock
    settings.ORDER_STOCK_RETRY_MAX = 0
    product = product_with_stock(0)
    order = place_order(customer, (product.id, 1))
    out = place_order(customer, (product.id, 1))  # out of stock beside it, and staying so
    others = bystanders(customer)
    with Pause("order.out_of_stock.decided", order_id=order.pk) as deciding:
        worker_a = Background(lambda: advance(order.pk, out.pk, *others))
        deciding.wait_reached()
        # when: stock arrives and a duplicate worker B reserves the order meanwhile
        StockLevel.objects.filter(product=product).update(on_hand=1)
        reserve(load(order.pk))
    worker_a.result()
    # then: the order beside it failed out of stock, the others went on
    assert (load(out.pk).status, load(out.pk).failure_reason) == ("failed", "out_of_stock")
    assert confirmed(*others)

    # then: A's failure did not apply to the reserved order; B's reservation holds (A judged
    # the order again from where it was, and went on with it)
    assert load(order.pk).status in ("reserved", "confirmed")
    level = StockLevel.objects.get(product=product)
    assert (level.reserved + level.committed, level.available) == (1, 0)
    assert not load(order.pk).logs.filter(event="out_of_stock").exists()
    run_to_completion(order.pk)
    assert load(order.pk).status == "confirmed"


# --- 9. payment rows are changed by guarded updates ----------------------------------------


def test_a_stale_charge_attempt_never_puts_a_captured_payment_back_in_doubt(
    customer, payment_sim, settings
):
    # given: worker B has read the order's payment as pending and stands at its charge ...
    order = reserved_order(customer)
    others = [reserved_order(customer).pk for _ in range(2)]
    with Pause("payment.charge.start", payment_id=order.payment_id) as starting:
        worker_b = Background(lambda: advance(order.pk, *others))
        starting.wait_reached()
        # ... while worker A charges and confirms the order
        advance(order.pk)
        assert load(order.pk).payment.status == "captured"
        # when: B goes on, and the provider does not answer it
        provider_unreachable(settings)
    worker_b.result()

    # then: the payment is still captured, the order confirmed; the others wait for the
    # provider, in doubt
    assert Payment.objects.get(pk=order.payment_id).status == "captured"
    assert load(order.pk).status == "confirmed"
    assert {load(pk).payment.status for pk in others} == {"in_doubt"}


# --- found in the second read of the change -------------------------------------------------


def test_a_lookup_saying_no_charge_yet_while_another_worker_charges_never_fails_the_order(
    customer, payment_sim
):
    # given: worker A has read the payment as never charged and stands at its charge ...
    order = reserved_order(customer)
    key = order.payment.idempotency_key
    others = bystanders(customer)
    with Pause("payment.charge.start", payment_id=order.payment_id) as starting:
        worker_a = Background(lambda: advance(order.pk, *others))
        starting.wait_reached()
        # ... while worker B sends the first charge request, which the provider holds ...
        payment_sim.configure(hold_charges=True)
        worker_b = Background(lambda: advance(order.pk))
        wait_for(lambda: payment_sim.requests(key, "charge"), timeout=10, message="B's charge")
        # ... and a lookup (the reconciler's, say) finds no charge yet
        payment_lookup(payment=Payment.objects.get(pk=order.payment_id))
        assert Payment.objects.get(pk=order.payment_id).status == "not_charged"

    # when: A goes on (its claim loses to B's), then B's charge is answered
    step_a = worker_a.result()[order.pk]
    payment_sim.configure(hold_charges=False)
    worker_b.result()

    # then: "no charge yet" was no refusal: A waits, B's capture confirms the order; the
    # others of A's batch, held by the provider with it, are confirmed once it answers
    assert not step_a.done
    run_to_completion(*others)
    assert confirmed(*others)
    assert not load(order.pk).logs.filter(event="payment_error").exists()
    run_to_completion(order.pk)
    assert load(order.pk).status == "confirmed"
    assert payment_sim.charge(key)["status"] == "captured"


def test_a_paid_order_whose_payment_a_cancellation_set_out_to_refund_is_cancelled_not_shipped(
    customer, payment_sim, settings
):
    # given: a confirmed order whose payment is being refunded, with no cancellation on
    # record (as an order caught mid-cancellation by the upgrade may be)
    order = place_order(customer, (product_with_stock(5).id, 1))
    run_to_completion(order.pk)
    Payment.objects.filter(pk=load(order.pk).payment_id).update(status="refund_in_doubt")

    # when
    report = reconcile(now=later(settings.ORDER_STUCK_AFTER_SECONDS + 1))

    # then: treated as the cancellation it is: refunded, cancelled, never pushed again
    order = load(order.pk)
    assert report.cancelled == 1 and report.repushed == 0
    assert (order.status, order.payment.status) == ("cancelled", "refunded")
    assert payment_sim.charge(order.payment.idempotency_key)["status"] == "refunded"
