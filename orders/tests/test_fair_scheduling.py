"""Scheduling that stays fair under a backlog and safe across machines: a re-push keeps an
order's place in the queue and never takes it from a live holder, and claims, leases and
event times are read from the database's clock, so a machine whose clock is off can neither
take what others hold nor lose what it holds."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.utils import timezone

from core.leases import lease_acquire
from orders.models import Order
from orders.reconciler import reconcile
from orders.scheduling import orders_claim
from orders.tests.helpers import ids
from webhooks.models import Event, EventType, Subscription
from webhooks.outbox import forget_wanted_types, outbox_write

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def clock_off_by(seconds: float) -> Iterator[None]:
    """This machine's clock `seconds` ahead of the database's (behind, if negative)."""
    real = timezone.now
    with mock.patch("django.utils.timezone.now", lambda: real() + timedelta(seconds=seconds)):
        yield


def database_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT STATEMENT_TIMESTAMP()")
        return cursor.fetchone()[0]


# --- a re-push keeps an order's place and its holder ---------------------------------------


def test_an_order_waiting_in_a_backlog_longer_than_the_stuck_threshold_keeps_its_place(
    placed, settings
):
    # given: a backlog of ready orders, the oldest waiting for longer than the threshold
    orders = placed(5)
    long_ago = timezone.now() - timedelta(seconds=settings.ORDER_STUCK_AFTER_SECONDS + 60)
    Order.objects.filter(pk=orders[0].pk).update(ready_at=long_ago, progressed_at=long_ago)

    # when: the reconciler passes, and finds it idle
    assert reconcile().requeued == 1

    # then: it is still the first in line
    assert ids(orders_claim(limit=1, seconds=30)) == [orders[0].pk]


def test_the_reconciler_never_takes_an_order_from_a_worker_still_holding_it(placed, settings):
    # given: an order a worker holds, making no progress for longer than the threshold
    [order] = placed(1)
    assert ids(orders_claim(limit=1, seconds=600)) == [order.pk]
    long_ago = timezone.now() - timedelta(seconds=settings.ORDER_STUCK_AFTER_SECONDS + 60)
    Order.objects.filter(pk=order.pk).update(progressed_at=long_ago)

    # when: the reconciler passes
    reconcile()

    # then: no second worker may take it while the first one's claim lasts
    assert orders_claim(limit=10, seconds=30) == []


# --- the database's clock --------------------------------------------------------------------


def test_a_worker_whose_clock_runs_ahead_takes_no_order_another_worker_holds(placed, settings):
    # given: a worker holding an order
    [order] = placed(1)
    assert ids(orders_claim(limit=1, seconds=settings.ORDER_CLAIM_SECONDS)) == [order.pk]

    # when: a worker on a machine whose clock is a claim period ahead claims
    with clock_off_by(settings.ORDER_CLAIM_SECONDS + 5):
        taken = orders_claim(limit=10, seconds=settings.ORDER_CLAIM_SECONDS)

    # then: it takes nothing
    assert taken == []


def test_a_worker_whose_clock_lags_holds_its_claim_as_long_as_any_other(placed, settings):
    # given: a worker on a machine whose clock lags a claim period behind the database's
    [order] = placed(1)
    with clock_off_by(-(settings.ORDER_CLAIM_SECONDS + 5)):
        held = orders_claim(limit=1, seconds=settings.ORDER_CLAIM_SECONDS)

    # then: it took the ready order, and no worker takes it from it while its claim lasts
    assert ids(held) == [order.pk]
    assert orders_claim(limit=10, seconds=settings.ORDER_CLAIM_SECONDS) == []


def test_a_lease_taken_on_a_machine_whose_clock_lags_is_held_for_its_whole_time():
    # given: beat on a machine whose clock lags a minute behind takes a 60 s lease
    with clock_off_by(-65):
        assert lease_acquire(name="reconciler", holder="lagging", seconds=60)

    # then: nobody else gets it meanwhile
    assert not lease_acquire(name="reconciler", holder="other", seconds=60)


def test_an_event_is_stamped_with_the_databases_time_whatever_the_writers_clock(placed):
    # given: a subscription to order events, and an order
    Subscription.objects.create(url="http://127.0.0.1:9/hook", event_types=["order.created"])
    forget_wanted_types()
    [order] = placed(1)

    # when: a machine whose clock is an hour ahead writes an event about it
    with clock_off_by(3600):
        outbox_write(EventType.ORDER_CREATED, {order.pk: {"status": "pending"}})

    # then: its time is the database's
    event = Event.objects.filter(subject_id=order.pk).latest("id")
    assert abs((event.created_at - database_now()).total_seconds()) < 5
