"""Order and stock events: written with their changes, delivered signed to the receiver
simulator over real HTTP, retried, recorded, and given up on."""

import json
import logging
import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone

from inventory.services import stock_reserve
from inventory.tests.factories import product_in_warehouse, product_with_stock
from orders.interventions import order_cancel
from orders.models import Order
from orders.tests.helpers import place_order, run_to_completion
from tests.processes import wait_for
from webhooks.delivery import (
    claim_limit,
    deliver_batch,
    deliveries_claim,
    deliveries_redeliver,
    deliveries_send,
    events_dispatch,
    outcomes_record,
)
from webhooks.metrics import WebhookCollector
from webhooks.models import Attempt, Delivery, Event, Subscription

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
ORDER_EVENTS = [
    "order.created",
    "order.reserved",
    "order.confirmed",
    "order.failed",
    "order.cancelled",
    "order.fulfilled",
    "order.refunded",
]


def documented_verify() -> Callable[..., bool]:
    """The `verify` of docs/webhooks.md, exactly as a receiver would copy it."""
    (code,) = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    namespace: dict = {}
    exec(code, namespace)
    return namespace["verify"]


@pytest.fixture
def subscription(receiver_sim) -> Subscription:
    return Subscription.objects.create(url=receiver_sim.hook_url(), event_types=ORDER_EVENTS)


def deliver_until(done, *, timeout: float = 20, message: str) -> None:
    """Run delivery rounds (as the worker does) until `done()` holds."""

    def round_done() -> bool:
        deliver_batch()
        return done()

    wait_for(round_done, timeout=timeout, interval=0.05, message=message)


def test_an_orders_life_is_told_event_by_event_in_the_order_it_happened(
    subscription, customer, payment_sim, warehouse_sim, receiver_sim
):
    # given: a product here and at the warehouse
    product = product_in_warehouse(warehouse_sim, 10)

    # when: an order lives its whole life, and the events are delivered
    order = place_order(customer, (product.id, 2))
    run_to_completion(order.id)
    deliver_until(lambda: len(receiver_sim.received()) == 4, message="four deliveries")

    # then: one event per change, written with it, each delivered once, signed
    events = list(Event.objects.order_by("id").values_list("type", "subject_id", "data"))
    assert [(t, s) for t, s, _ in events] == [
        ("order.created", order.pk),
        ("order.reserved", order.pk),
        ("order.confirmed", order.pk),
        ("order.fulfilled", order.pk),
    ]
    assert events[2][2] == {
        "status": "confirmed",
        "previous_status": "reserved",
        "failure_reason": "",
    }
    received = receiver_sim.received()
    verify = documented_verify()
    for record in received:
        body = json.loads(record["body"])
        assert body["id"] == record["headers"]["webhook-id"]
        assert verify(subscription.secret, record["headers"], record["body"].encode())
        assert body["data"]["order"]["id"] == order.pk
        assert record["headers"]["content-type"] == "application/json"
    assert sorted(json.loads(r["body"])["type"] for r in received) == sorted(
        t for t, _, _ in events
    )
    assert set(Delivery.objects.values_list("status", "attempts")) == {("delivered", 1)}


def test_the_documented_recipe_refuses_a_tampered_body_another_secret_and_a_replay(
    subscription, customer, receiver_sim
):
    place_order(customer, (product_with_stock(5).id, 1))
    deliver_until(lambda: receiver_sim.received(), message="the delivery")
    (record,) = receiver_sim.received()
    headers, body = record["headers"], record["body"].encode()
    verify = documented_verify()

    assert verify(subscription.secret, headers, body)
    assert not verify(subscription.secret, headers, body.replace(b'"pending"', b'"fulfilled"'))
    assert not verify("whsec_" + "A" * 32, headers, body)
    old = {**headers, "webhook-timestamp": str(int(time.time()) - 301)}
    assert not verify(subscription.secret, old, body)


def test_nothing_is_written_for_events_no_subscription_wants(customer, payment_sim):
    Subscription.objects.create(url="http://127.0.0.1:9/hooks", event_types=["order.failed"])

    order = place_order(customer, (product_with_stock(5).id, 1))
    run_to_completion(order.id)

    assert Order.objects.get(pk=order.pk).status == "confirmed"
    assert Event.objects.count() == 0


def test_a_receiver_failing_for_a_while_gets_every_event_once_it_recovers(
    subscription, customer, receiver_sim, settings
):
    # given: a receiver that fails the next 3 requests (500, 503 and a timeout)
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.05
    settings.WEBHOOK_READ_TIMEOUT = 0.5
    receiver_sim.configure(fail_status=503, timeout_delay_ms=1500)
    receiver_sim.script("fail", "fail", "timeout")
    event_count = 3
    for _ in range(event_count):
        place_order(customer, (product_with_stock(5).id, 1))

    # when: delivery rounds run until all are delivered
    deliver_until(
        lambda: Delivery.objects.filter(status="delivered").count() == event_count,
        message="every event delivered",
    )

    # then: nothing lost, every attempt recorded, the subscription no longer failing
    attempts = list(Attempt.objects.order_by("id"))
    failed = [a for a in attempts if not a.succeeded]
    assert len(failed) == 3 and len(attempts) == event_count + 3
    assert sorted(a.status_code or 0 for a in failed) == [0, 503, 503]
    timed_out = next(a for a in failed if a.status_code is None)
    assert "Timeout" in timed_out.error and timed_out.duration_ms >= 400
    assert all(a.response_excerpt for a in failed if a.status_code == 503)
    ids = {json.loads(r["body"])["id"] for r in receiver_sim.received() if r["status"] == 200}
    assert ids == {str(uid) for uid in Event.objects.values_list("uid", flat=True)}
    subscription.refresh_from_db()
    assert subscription.failing_since is None and subscription.is_active


def test_a_delivery_is_given_up_after_its_attempts_and_a_receiver_down_for_a_day_is_disabled(
    subscription, customer, receiver_sim, settings, caplog
):
    # given: a receiver that always fails, 3 attempts per delivery, disabled after 1 s
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.05
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    settings.WEBHOOK_DISABLE_AFTER_SECONDS = 1
    receiver_sim.configure(always_fail=True)
    place_order(customer, (product_with_stock(5).id, 1))

    # when: rounds run until the delivery is given up
    deliver_until(
        lambda: Delivery.objects.get().status == "failed", message="the delivery given up"
    )

    # then: 3 attempts, the subscription failing but not disabled yet
    assert Attempt.objects.count() == 3
    subscription.refresh_from_db()
    assert subscription.is_active and subscription.failing_since is not None

    # when: it keeps failing past the limit
    Subscription.objects.filter(pk=subscription.pk).update(
        failing_since=timezone.now() - timedelta(seconds=2)
    )
    place_order(customer, (product_with_stock(5).id, 1))
    with caplog.at_level(logging.WARNING, logger="webhooks.delivery"):
        deliver_until(
            lambda: not Subscription.objects.get(pk=subscription.pk).is_active,
            message="the subscription disabled",
        )

    # then: disabled, logged, counted, and nothing more is sent to it
    subscription.refresh_from_db()
    assert subscription.disabled_reason.startswith("Every attempt failed since")
    assert f"webhook subscription {subscription.pk}" in caplog.text
    metrics = {m.name: m.samples for m in WebhookCollector().collect()}
    assert metrics["orderproj_webhook_subscriptions_disabled"][0].value == 1
    by_status = {s.labels["status"]: s.value for s in metrics["orderproj_webhook_deliveries"]}
    assert (by_status["failed"], by_status["pending"]) == (1, 1)  # the second waits for it
    sent = len(receiver_sim.received())
    place_order(customer, (product_with_stock(5).id, 1))
    deliver_batch()
    assert len(receiver_sim.received()) == sent
    assert Delivery.objects.filter(status="pending").count() >= 1  # waiting for it


def test_an_operator_redelivers_a_failed_delivery_once_the_receiver_is_back(
    subscription, customer, receiver_sim, settings
):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    receiver_sim.configure(always_fail=True)
    place_order(customer, (product_with_stock(5).id, 1))
    deliver_until(lambda: Delivery.objects.get().status == "failed", message="given up")

    receiver_sim.configure(always_fail=False)
    with transaction.atomic():
        assert deliveries_redeliver(delivery_ids=[Delivery.objects.get().pk]) == 1
    deliver_until(lambda: Delivery.objects.get().status == "delivered", message="redelivered")

    delivery = Delivery.objects.get()
    assert delivery.attempts == 2
    bodies = [r["body"] for r in receiver_sim.received()]
    assert len(bodies) == 2 and bodies[0] == bodies[1]  # the same event, the same body


def test_a_refund_and_stock_running_low_are_events_too(customer, payment_sim, receiver_sim):
    # given: subscriptions to refunds and to low stock
    Subscription.objects.create(
        url=receiver_sim.hook_url(), event_types=["order.refunded", "stock.low"]
    )
    product = product_with_stock(8)

    # when: a reservation takes it from 8 to 4 available (threshold 5), and a confirmed
    # order of it is cancelled (refunded)
    with transaction.atomic():
        stock_reserve(orders={999: {product.pk: 4}})
    order = place_order(customer, (product.id, 1))
    run_to_completion(order.id)
    order_cancel(order=Order.objects.get(pk=order.pk), actor=customer, via="api")
    deliver_until(lambda: len(receiver_sim.received()) == 2, message="two events")

    # then
    bodies = {b["type"]: b for b in (json.loads(r["body"]) for r in receiver_sim.received())}
    low = bodies["stock.low"]["data"]
    assert (low["available"], low["previous_available"], low["threshold"]) == (4, 8, 5)
    assert low["stock"]["product_id"] == product.pk
    refunded = bodies["order.refunded"]["data"]
    assert refunded["order"]["id"] == order.pk and refunded["amount"] == str(order.total)
    assert refunded["order"]["payment"]["status"] == "refunded"
    # the second reservation took it lower still, but it had crossed already: one event
    assert Event.objects.filter(type="stock.low").count() == 1


def test_a_round_claims_no_more_than_can_time_out_within_its_claim(settings):
    # every receiver taking its whole timeout (2 + 5 s), 8 at a time: 6 waves fit in 80 % of 60 s
    assert claim_limit() == 48
    settings.WEBHOOK_BATCH_SIZE = 20
    assert claim_limit() == 20
    settings.WEBHOOK_CLAIM_SECONDS = 1  # shorter than one request: one wave
    assert claim_limit() == 8


def test_a_round_records_only_the_deliveries_it_still_holds(subscription, customer, receiver_sim):
    # given: two events claimed and sent by this worker
    place_order(customer, (product_with_stock(5).id, 1))
    place_order(customer, (product_with_stock(5).id, 1))
    events_dispatch(limit=10)
    claimed = deliveries_claim(limit=10, seconds=60)
    outcomes = deliveries_send(claimed)
    assert len(outcomes) == 2 and all(o.delivered for o in outcomes)

    # when: meanwhile its claim on the first ran out and another worker took it, and the
    # second's subscription was deleted (its deliveries with it)
    first, second = claimed
    Delivery.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now())
    Subscription.objects.create(url=receiver_sim.hook_url("other"), event_types=ORDER_EVENTS)
    Delivery.objects.filter(pk=second.pk).delete()
    result = outcomes_record(outcomes)

    # then: neither is recorded by this worker (the other worker records the first), and the
    # round's transaction commits
    assert (result.delivered, Attempt.objects.count()) == (0, 0)
    assert Delivery.objects.get(pk=first.pk).status == "pending"


def test_a_secret_the_signer_cannot_use_is_refused_and_a_bad_delivery_is_only_an_attempt(
    subscription, customer, receiver_sim
):
    from webhooks.admin import SubscriptionForm

    form = SubscriptionForm(
        data={"url": "https://example.com/x", "event_types": ["order.created"], "secret": "x!"}
    )
    assert not form.is_valid() and "secret" in form.errors

    # a secret broken past the form: its deliveries fail, as attempts; others go through
    broken = Subscription.objects.create(
        url=receiver_sim.hook_url("broken"), event_types=ORDER_EVENTS, secret="whsec_!!"
    )
    place_order(customer, (product_with_stock(5).id, 1))
    deliver_batch()
    assert Delivery.objects.get(subscription=subscription).status == "delivered"
    attempt = Attempt.objects.get(delivery__subscription=broken)
    assert attempt.status_code is None and "Error" in attempt.error


def test_a_refund_answered_to_two_callers_is_told_once(customer, payment_sim, receiver_sim):
    from payments.gateway import ProviderCharge
    from payments.models import Payment
    from payments.services import Answer, payments_record

    # given: a paid order whose refund two callers (the workflow, the reconciler) both sent
    Subscription.objects.create(url=receiver_sim.hook_url(), event_types=["order.refunded"])
    order = place_order(customer, (product_with_stock(5).id, 1))
    run_to_completion(order.id)
    payment = Order.objects.get(pk=order.pk).payment
    Payment.objects.filter(pk=payment.pk).update(status="refund_in_doubt")
    first, second = Payment.objects.get(pk=payment.pk), Payment.objects.get(pk=payment.pk)

    # when: both get the provider's answer "refunded"
    answer = ProviderCharge(status="refunded", provider_reference="ch_1")
    payments_record([Answer(first, "refund", first.attempts, charge=answer)])
    payments_record([Answer(second, "refund", second.attempts, charge=answer)])

    # then: one event
    assert Payment.objects.get(pk=payment.pk).status == "refunded"
    assert Event.objects.filter(type="order.refunded").count() == 1
