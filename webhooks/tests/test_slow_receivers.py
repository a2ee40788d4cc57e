"""One receiver that drips or hangs its answers, beside healthy ones: every request is cut at
its deadline, a round never waits past it, the healthy subscriptions get each event once,
and the slow one's attempts are recorded and counted toward disabling it."""

import time
from collections import Counter
from datetime import timedelta
from itertools import pairwise

import pytest

from inventory.tests.factories import product_with_stock
from orders.tests.helpers import place_order
from webhooks.delivery import deliver_batch, deliveries_claim, events_dispatch
from webhooks.models import Attempt, Delivery, Subscription

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

ORDERS = 4


@pytest.fixture
def short_deadlines(settings):
    """Requests cut after 0.5 s in all, claims of 2 s, a failed delivery due again at once."""
    settings.WEBHOOK_CONNECT_TIMEOUT = 0.2
    settings.WEBHOOK_READ_TIMEOUT = 0.3
    settings.WEBHOOK_CLAIM_SECONDS = 2
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.001
    settings.WEBHOOK_MAX_ATTEMPTS = 100
    return settings


@pytest.mark.parametrize("misbehaviour", ["drip", "hang"])
def test_a_dripping_or_hanging_receiver_is_cut_at_the_deadline_and_holds_up_no_one(
    short_deadlines, customer, receiver_sim, misbehaviour
):
    # given: a healthy receiver, and one that answers 200 at once but its body one byte every
    # 0.2 s (never 0.3 s between two bytes: no read timeout fires), or never answers
    short_deadlines.WEBHOOK_DISABLE_AFTER_SECONDS = 1
    receiver_sim.configure(drip_interval_ms=200, hang_ms=5_000)
    receiver_sim.pin("slow", misbehaviour)
    healthy = Subscription.objects.create(
        url=receiver_sim.hook_url("good"), event_types=["order.created"]
    )
    slow = Subscription.objects.create(
        url=receiver_sim.hook_url("slow"), event_types=["order.created"]
    )
    for _ in range(ORDERS):
        place_order(customer, (product_with_stock(5).id, 1))

    # when: rounds run, one after another, for a little longer than the slow one may fail
    rounds = []
    started = time.monotonic()
    while time.monotonic() - started < 1.6:
        begun = time.monotonic()
        deliver_batch()
        rounds.append(time.monotonic() - begun)

    # then: no round outlasted its claim (on main a dripping round took the whole drip,
    # 3.4 s, past its 2 s claim, and its outcomes were dropped); the first, every request
    # at once, took about one deadline
    assert max(rounds) < short_deadlines.WEBHOOK_CLAIM_SECONDS, rounds
    assert rounds[0] < 1.2, rounds
    # the healthy receiver got each event once
    good = Counter(
        r["headers"]["webhook-id"] for r in receiver_sim.received() if r["hook"] == "good"
    )
    assert len(good) == ORDERS and set(good.values()) == {1}, good
    assert set(Delivery.objects.filter(subscription=healthy).values_list("status", "attempts")) == {
        ("delivered", 1)
    }
    # every request to the slow one is an attempt, recorded as a timeout: the dripping one's
    # at the deadline, cut; the silent one's when the read timeout (0.3 s) fired
    attempts = list(Attempt.objects.filter(delivery__subscription=slow).order_by("started_at"))
    assert len(attempts) >= ORDERS + 1
    # the first ORDERS at once (its share, 4); once it was failing, one request at a time
    later = attempts[ORDERS:]
    for before, after in pairwise(later):
        ended = before.started_at + timedelta(milliseconds=before.duration_ms)
        assert after.started_at >= ended - timedelta(milliseconds=20), (before, after)
    errors = {a.error for a in attempts}
    if misbehaviour == "drip":
        assert errors == {"TimeoutError: no whole answer within 0.5 s"}
        assert all(450 <= a.duration_ms < 1000 for a in attempts), [a.duration_ms for a in attempts]
    else:
        assert all("Read timed out" in error for error in errors), errors
        assert all(250 <= a.duration_ms < 1000 for a in attempts), [a.duration_ms for a in attempts]
    # and counted: failing for longer than WEBHOOK_DISABLE_AFTER_SECONDS, it was disabled
    slow.refresh_from_db()
    assert not slow.is_active and slow.disabled_reason.startswith("Every attempt failed since")


def test_one_subscription_never_has_more_than_its_share_of_a_claim(
    settings, customer, receiver_sim
):
    # given: 30 events for each of two subscriptions; one subscription's share of a claim is
    # WEBHOOK_SUBSCRIPTION_CONCURRENCY (2) senders x 3 waves of its whole deadline
    settings.WEBHOOK_SUBSCRIPTION_CONCURRENCY = 2
    settings.WEBHOOK_CONNECT_TIMEOUT, settings.WEBHOOK_READ_TIMEOUT = 1, 1
    settings.WEBHOOK_CLAIM_SECONDS = 8  # 80 % of it: 3 waves of 2 s
    first = Subscription.objects.create(
        url=receiver_sim.hook_url("a"), event_types=["order.created"]
    )
    second = Subscription.objects.create(
        url=receiver_sim.hook_url("b"), event_types=["order.created"]
    )
    for _ in range(30):
        place_order(customer, (product_with_stock(5).id, 1))
    events_dispatch(limit=100)
    due = Delivery.objects.order_by("next_attempt_at", "id")
    oldest = {
        s.pk: list(due.filter(subscription=s).values_list("pk", flat=True)) for s in (first, second)
    }

    # when: a worker claims 20, holding 4 of the first's already
    claimed = deliveries_claim(limit=20, seconds=60, held={first.pk: 4})

    # then: 2 more of the first, 6 of the second (each the longest due of its own), no more
    by_subscription = Counter(d.subscription_id for d in claimed)
    assert by_subscription == {first.pk: 2, second.pk: 6}
    for subscription in (first, second):
        mine = [d.pk for d in claimed if d.subscription_id == subscription.pk]
        assert mine == oldest[subscription.pk][: len(mine)]
