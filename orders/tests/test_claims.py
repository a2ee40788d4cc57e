"""Workers take up ready orders by claiming them in the database (orders/scheduling.py), and the
broker's messages only wake them (orders.tasks.process_ready): which orders a claim takes,
that claims made at once never overlap, that a dead worker's orders come back, and that a
burst of new orders wakes one worker."""

import threading
from datetime import timedelta
from unittest import mock

import pytest
from django.core.cache import cache
from django.db import OperationalError, connection, connections, transaction
from django.utils import timezone

from core.checkpoints import listening
from orderproj.celery import app as celery_app
from orders.dispatch import (
    PROCESS_READY,
    WAKE_AFTER_CLAIMS_PENDING,
    wake_order_workers,
    wake_taken,
)
from orders.models import Order
from orders.scheduling import orders_claim, orders_held, orders_ready_now
from orders.tasks import process_ready
from orders.tests.helpers import ids
from orders.workflow import orders_advance
from tests.interleave import Inject, raise_
from tests.live import queued_tasks
from tests.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.embedded
def test_a_claim_takes_the_ready_orders_oldest_first_up_to_its_limit(placed):
    # given: six orders, of which one waits for a retry, one is being cancelled, one ended
    orders = placed(6)
    waiting, cancelling, ended = orders[1], orders[3], orders[4]
    Order.objects.filter(pk=waiting.pk).update(ready_at=timezone.now() + timedelta(minutes=1))
    Order.objects.filter(pk=cancelling.pk).update(cancel_requested_at=timezone.now())
    Order.objects.filter(pk=ended.pk).update(status="cancelled", ready_at=None)

    # when: a worker holds two while another claims two
    with orders_held(limit=2, seconds=30) as first:
        second = orders_claim(limit=2, seconds=600)

        # then: the ready ones, oldest first, each claimed once, loaded with their payments
        assert ids(first) == [orders[0].pk, orders[2].pk]
        assert ids(second) == [orders[5].pk]
        assert all(o.payment.pk == o.payment_id for o in first + second)
        assert orders_claim(limit=10, seconds=30) == []  # all held
    # and the holder's are ready again once it is done; the waiting one once its time has come
    assert ids(orders_claim(limit=10, seconds=600)) == [orders[0].pk, orders[2].pk]
    later = timezone.now() + timedelta(minutes=2)
    assert ids(orders_claim(limit=10, seconds=30, now=later)) == [waiting.pk]


@pytest.mark.embedded
def test_a_holder_renews_its_claim_while_it_works_and_keeps_off_orders_taken_from_it(placed):
    # given: a worker holding three orders on a claim of 1.5 s (renewed every 0.5 s)
    orders = placed(3)
    with orders_held(limit=10, seconds=1.5) as batch:
        first_until = Order.objects.get(pk=orders[0].pk).claimed_until

        # when: its claim is renewed past the first one
        wait_for(
            lambda: Order.objects.get(pk=orders[0].pk).claimed_until > first_until,
            timeout=10,
            interval=0.05,
            message="the claim renewed",
        )

        # then: nobody can take them after the first claim would have run out
        assert orders_claim(limit=10, seconds=30, now=first_until + timedelta(seconds=0.1)) == []
        # and a re-push (the reconciler's) leaves them with it ...
        orders_ready_now(ids(orders))
        assert orders_claim(limit=10, seconds=600) == []
        # ... but an order whose claim ran out under it (a renewal lost) is another worker's
        Order.objects.filter(pk=orders[1].pk).update(claimed_until=timezone.now())
        assert ids(orders_claim(limit=10, seconds=600)) == [orders[1].pk]
        taken_until = Order.objects.get(pk=orders[1].pk).claimed_until

    # and on leaving, the holder let its own go and left the taken one alone
    assert ids(batch) == ids(orders)
    held = dict(Order.objects.filter(pk__in=ids(orders)).values_list("pk", "claimed_until"))
    assert held == {orders[0].pk: None, orders[1].pk: taken_until, orders[2].pk: None}


@pytest.mark.embedded
def test_the_orders_of_a_worker_that_died_are_taken_up_when_its_claim_runs_out(placed):
    # given: orders claimed for 30 s by a worker that never releases them (it died)
    orders = placed(3)
    now = timezone.now()
    assert ids(orders_claim(limit=10, seconds=30, now=now)) == ids(orders)

    # then: nobody takes them while the claim runs, anybody once it has run out
    assert orders_claim(limit=10, seconds=30, now=now + timedelta(seconds=29)) == []
    assert ids(orders_claim(limit=10, seconds=30, now=now + timedelta(seconds=31))) == ids(orders)


@pytest.mark.embedded
def test_a_repush_makes_a_waiting_order_ready_at_once_and_leaves_a_held_one_to_its_holder(placed):
    # given: an order waiting an hour for its retry, and one a worker holds
    orders = placed(2)
    Order.objects.filter(pk=orders[0].pk).update(ready_at=timezone.now() + timedelta(hours=1))
    assert ids(orders_claim(limit=10, seconds=600)) == [orders[1].pk]

    # when: both are re-pushed
    orders_ready_now(ids(orders))

    # then: the waiting one is ready now; the held one stays with its holder
    assert ids(orders_claim(limit=10, seconds=600)) == [orders[0].pk]
    assert orders_claim(limit=10, seconds=600) == []


@pytest.mark.embedded
def test_an_order_re_pushed_between_a_claim_and_its_loading_stays_with_the_claim(placed):
    # given: three ready orders, one of which is re-pushed (by the reconciler or an operator)
    # right after a worker's claim took it, before the worker loaded its batch
    orders = placed(3)
    pending = [orders[0].pk]

    def repush(context):
        if pending:
            orders_ready_now([pending.pop()])

    # when: the worker holds its batch while another worker claims
    with listening("orders.claimed", repush), orders_held(limit=3, seconds=30) as batch:
        # then: the re-pushed order is in the batch, and no other worker takes it
        assert ids(batch) == ids(orders)
        assert orders_claim(limit=3, seconds=30) == []
    # and leaving releases them all
    assert not Order.objects.filter(pk__in=ids(orders), claimed_until__isnull=False).exists()


def test_a_holder_whose_connection_was_cut_renews_its_claim_on_a_new_one(placed):
    # given: a worker holding an order, its claim renewed every half second
    [order] = placed(1)

    def claimed_until():
        return Order.objects.values_list("claimed_until", flat=True).get(pk=order.pk)

    with orders_held(limit=1, seconds=1.5):
        first = claimed_until()
        wait_for(lambda: claimed_until() != first, timeout=10, message="a first renewal")

        # when: the renewing thread's database connection is cut (a restart, a proxy)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ' AND query LIKE \'UPDATE "orders_order" SET "claimed_until"%\''
            )
            assert cursor.fetchall(), "the renewing connection was not found"
        cut = claimed_until()

        # then: the claim is renewed again, on a new connection, before it runs out
        wait_for(lambda: claimed_until() > cut, timeout=10, message="a renewal after the cut")


@pytest.mark.embedded
def test_a_confirmed_order_whose_payment_is_not_captured_is_not_taken_up_again(placed):
    # given: a confirmed order whose payment is not captured (an operator's doing, say)
    [order] = placed(1)
    Order.objects.filter(pk=order.pk).update(status="confirmed")

    # when: a worker takes it up
    with orders_held(limit=10, seconds=30) as batch:
        steps = orders_advance(batch)

    # then: it is not pushed, and no worker claims it again (an operator settles it)
    assert steps[order.pk].done
    assert Order.objects.get(pk=order.pk).ready_at is None
    assert orders_claim(limit=10, seconds=30) == []


def test_claims_made_at_once_take_disjoint_orders_without_waiting_for_each_other(placed):
    # given: six ready orders, and a worker whose claim of three is not committed yet
    orders = placed(6)
    claimed, done = threading.Event(), threading.Event()
    held: list[int] = []

    def other_worker():
        try:
            with transaction.atomic():
                held.extend(ids(orders_claim(limit=3, seconds=30)))
                claimed.set()
                done.wait(timeout=30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert claimed.wait(timeout=30)
        # when: this worker claims meanwhile (it would block on the other's row locks, then
        # take the same rows, were they not skipped)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
        try:
            mine = ids(orders_claim(limit=10, seconds=30))
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = 0")
    finally:
        done.set()
        thread.join(timeout=30)

    # then: each has its own, and together they have all
    assert held == ids(orders[:3])
    assert mine == ids(orders[3:])


def test_a_burst_of_wakeups_publishes_one_until_a_worker_takes_it(settings):
    settings.ORDER_WAKE_DEBOUNCE_SECONDS = 30
    wake_taken()
    with mock.patch("orders.dispatch.publish", return_value=True) as published:
        for _ in range(10):
            wake_order_workers()
        assert [c.args[0] for c in published.call_args_list] == [PROCESS_READY]
        wake_taken()  # a worker took it: the next order wakes one again
        wake_order_workers()
        # a wake-up for later (a retry's) is never held back
        wake_order_workers(countdown=5)
    assert [c.kwargs.get("countdown") for c in published.call_args_list] == [None, None, 5]
    wake_taken()


def test_a_worker_advances_the_ready_orders_and_wakes_one_for_the_soonest_retry(
    placed, payment_sim, settings
):
    # given: three new orders, the payment service refusing one of them once (503)
    orders = placed(3)
    payment_sim.script("error", key=orders[1].payment.idempotency_key)
    # not due again while the worker runs
    settings.ORDER_PAYMENT_RETRY_BASE_SECONDS = settings.ORDER_PAYMENT_RETRY_MAX_DELAY = 30
    settings.ORDER_BATCH_SIZE = 2  # two batches

    # when: a worker is woken
    with mock.patch("orders.dispatch.publish", return_value=True) as published:
        advanced = process_ready()

    # then: it took up all three; two ended, and it asked to be woken for the retry
    assert advanced == 3
    status = dict(Order.objects.filter(pk__in=ids(orders)).values_list("pk", "status"))
    assert status == {
        orders[0].pk: "fulfilled",
        orders[1].pk: "reserved",
        orders[2].pk: "fulfilled",
    }
    waiting = Order.objects.get(pk=orders[1].pk)
    assert waiting.claimed_until is None and waiting.ready_at > timezone.now()
    (wake,) = published.call_args_list
    assert wake.args[0] == PROCESS_READY
    due = (waiting.ready_at - timezone.now()).total_seconds()
    assert wake.kwargs["countdown"] > 0 and abs(wake.kwargs["countdown"] - due) < 1.0


def test_a_batch_the_database_failed_wakes_a_worker_for_when_its_claim_runs_out(placed, settings):
    # given: the database goes away while batches run (as PostgreSQL restarting does)
    cache.delete(WAKE_AFTER_CLAIMS_PENDING)
    orders = placed(2)
    celery_app.control.purge()  # their wake-ups
    fault = OperationalError("terminating connection due to administrator command")

    # when: a batch fails, and another fails again before its claim would run out
    with Inject("payment.charge.start", raise_(fault), times=2):
        for _ in range(2):
            with pytest.raises(OperationalError):
                process_ready()
            # (their charge's retry was scheduled before it would go out: due again now)
            Order.objects.filter(pk__in=ids(orders)).update(ready_at=timezone.now())

    # then: besides the tasks' own retries, one worker is woken once the claim has run out,
    # so the orders do not wait for beat (which may be down too), and no more than one
    (wake,) = queued_tasks("orders")
    assert wake[0] == PROCESS_READY
    due_in = (wake[1] - timezone.now()).total_seconds()
    assert settings.ORDER_CLAIM_SECONDS < due_in <= settings.ORDER_CLAIM_SECONDS + 1
    # and that worker finds them ready and finishes them
    Order.objects.filter(pk__in=ids(orders)).update(claimed_until=None)  # as if run out
    assert process_ready() == 2
    assert set(Order.objects.filter(pk__in=ids(orders)).values_list("status", flat=True)) == {
        "fulfilled"
    }
    cache.delete(WAKE_AFTER_CLAIMS_PENDING)
    celery_app.control.purge()


def test_a_worker_whose_claim_itself_failed_asks_for_no_later_wake_up(placed):
    # given: the database gone before anything is claimed (a wake-up that comes during an
    # outage): its orders are claimed by no one, so nothing waits for a claim to run out
    cache.delete(WAKE_AFTER_CLAIMS_PENDING)
    placed(1)
    celery_app.control.purge()  # its wake-up
    fault = OperationalError("connection failed")

    with Inject("orders.claiming", raise_(fault)), pytest.raises(OperationalError):
        process_ready()

    # then: only the task's own retry (Celery's), no wake-up that would multiply them
    assert queued_tasks() == []


def test_a_worker_out_of_time_hands_the_rest_over(placed, settings):
    # given: a time budget that one batch uses up
    orders = placed(3)
    settings.ORDER_BATCH_SIZE, settings.ORDER_BATCH_TIME_BUDGET_SECONDS = 2, 0

    with mock.patch("orders.dispatch.publish", return_value=True) as published:
        advanced = process_ready()

    # then: it did one batch, and woke another worker for the one left
    assert advanced == 2
    assert Order.objects.filter(pk__in=ids(orders), status="fulfilled").count() == 2
    assert [(c.args[0], c.kwargs.get("countdown")) for c in published.call_args_list] == [
        (PROCESS_READY, None)
    ]
