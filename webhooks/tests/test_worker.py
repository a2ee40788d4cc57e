"""The outbox against real Celery workers: events committed while no wake-up reached a worker,
and a worker SIGKILLed with deliveries in flight, are all delivered by the next worker, each
event under its one id, signed."""

import json
import os
import signal

import pytest

from inventory.tests.factories import product_with_stock
from orderproj.celery import app
from orders.tests.helpers import place_order, run_to_completion
from tests.live import WorkerProcess, forget_unacked
from tests.processes import wait_for
from webhooks.dispatch import DELIVER
from webhooks.models import Attempt, Delivery, Event, Subscription
from webhooks.tests.test_delivery import ORDER_EVENTS, documented_verify

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_worker_killed_mid_delivery_leaves_every_event_to_the_next_one(
    worker_env, tmp_path, customer, payment_sim, receiver_sim
):
    # given: a subscription, and orders whose events are committed but whose wake-ups were
    # lost (as if the process that committed them had died before publishing)
    subscription = Subscription.objects.create(
        url=receiver_sim.hook_url(), event_types=ORDER_EVENTS
    )
    for _ in range(4):
        run_to_completion(place_order(customer, (product_with_stock(5).id, 1)).id)
    events = set(Event.objects.values_list("uid", flat=True))
    assert len(events) == 12  # created, reserved, confirmed of each (no warehouse here)
    app.control.purge()
    # ... and a receiver slow to answer the first requests, so a worker dies mid-send
    receiver_sim.configure(slow_ms=5000)
    receiver_sim.script("slow", "slow")
    env = {**worker_env, "WEBHOOK_CLAIM_SECONDS": "3", "WEBHOOK_CONCURRENCY": "2"}

    # when: a worker takes them up (beat's sweep), and is SIGKILLed while it waits
    first = WorkerProcess(env, name="hooks-first", log_path=tmp_path / "first.log")
    try:
        first.wait_ready()
        app.send_task(DELIVER)
        wait_for(lambda: receiver_sim.received(), timeout=30, message="a delivery in flight")
    finally:  # (killed whatever happened: a worker left running takes later tests' events)
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.proc.wait(timeout=10)
    assert forget_unacked(DELIVER) >= 1  # its task, which kombu would requeue in an hour
    assert Attempt.objects.count() == 0  # it recorded nothing: it died sending

    # ... and another worker starts, and beat's sweep comes round until all are delivered
    second = WorkerProcess(env, name="hooks-second", log_path=tmp_path / "second.log")
    try:
        second.wait_ready()

        def all_delivered() -> bool:
            app.send_task(DELIVER)
            return Delivery.objects.filter(status="delivered").count() == len(events)

        wait_for(all_delivered, timeout=60, interval=1, message="every event delivered")
    finally:
        second.stop()
        forget_unacked(DELIVER)  # a retry's wake-up it held for later, if any

    # then: every event reached the receiver under its one id, signed; only those in flight
    # at the kill arrived twice
    received = receiver_sim.received()
    ids = [r["headers"]["webhook-id"] for r in received]
    assert set(ids) == {str(uid) for uid in events}
    repeated = {i for i in ids if ids.count(i) > 1}
    assert len(repeated) <= 2 and len(ids) == len(events) + len(repeated)
    verify = documented_verify()
    for record in received:
        assert verify(subscription.secret, record["headers"], record["body"].encode())
        assert json.loads(record["body"])["id"] == record["headers"]["webhook-id"]
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {1}
