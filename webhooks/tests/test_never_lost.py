"""An event is for the subscriptions receiving its type when it was written, fixed in the
change's transaction: whatever happens to a subscription before a worker dispatches the
event (disabled by an operator or by the failing rule, a backlog, a worker down), the event
waits for it and is sent once it is enabled."""

import json

import pytest
from django.utils import timezone

from inventory.tests.factories import product_with_stock
from orders.tests.helpers import place_order
from webhooks.delivery import deliver_batch, subscriptions_enable
from webhooks.models import Delivery, Event, Subscription

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]


def test_an_event_written_before_its_subscription_was_disabled_is_sent_once_it_is_enabled(
    customer, receiver_sim
):
    # given: two subscriptions, and an order whose event was written while both were active
    kept = Subscription.objects.create(
        url=receiver_sim.hook_url("kept"), event_types=["order.created"]
    )
    other = Subscription.objects.create(
        url=receiver_sim.hook_url("other"), event_types=["order.created"]
    )
    order = place_order(customer, (product_with_stock(5).id, 1))
    assert Event.objects.get().subscription_ids == [kept.pk, other.pk]

    # when: the first is disabled before any worker took the event up (as the failing rule
    # or an operator does), and a round runs
    Subscription.objects.filter(pk=kept.pk).update(
        is_active=False, disabled_at=timezone.now(), disabled_reason="Every attempt failed"
    )
    deliver_batch()

    # then: nothing went to it, but its delivery waits (on main: none was made, the event lost)
    hooks = [r["hook"] for r in receiver_sim.received()]
    assert hooks == ["other"]
    assert list(Delivery.objects.filter(subscription=kept).values_list("status", flat=True)) == [
        "pending"
    ]

    # and once it is enabled again, the event is delivered to it
    subscriptions_enable(subscription_ids=[kept.pk])
    deliver_batch()
    (record,) = [r for r in receiver_sim.received() if r["hook"] == "kept"]
    assert json.loads(record["body"])["data"]["order"]["id"] == order.pk
    assert Delivery.objects.get(subscription=kept).status == "delivered"


def test_a_deleted_subscription_gets_nothing_and_an_event_of_the_release_before_goes_to_the_active(
    customer, receiver_sim
):
    # given: an event for a subscription since deleted, and one written by the release before
    # this field (no subscriptions named: for those active at dispatch)
    gone = Subscription.objects.create(
        url=receiver_sim.hook_url("gone"), event_types=["order.created"]
    )
    place_order(customer, (product_with_stock(5).id, 1))
    gone.delete()
    active = Subscription.objects.create(
        url=receiver_sim.hook_url("active"), event_types=["order.created"]
    )
    place_order(customer, (product_with_stock(5).id, 1))
    legacy = Event.objects.order_by("id").last()
    Event.objects.filter(pk=legacy.pk).update(subscription_ids=None)

    # when
    deliver_batch()

    # then: the first event has no delivery; the legacy one went to the active subscription
    assert [r["hook"] for r in receiver_sim.received()] == ["active"]
    assert list(Delivery.objects.values_list("event_id", "subscription_id")) == [
        (legacy.pk, active.pk)
    ]


def test_an_operator_skips_what_waits_for_a_disabled_subscription_after_seeing_how_much(
    admin_client, customer, receiver_sim
):
    # given: three events kept for a disabled subscription
    sub = Subscription.objects.create(url=receiver_sim.hook_url(), event_types=["order.created"])
    for _ in range(3):
        place_order(customer, (product_with_stock(5).id, 1))
    Subscription.objects.filter(pk=sub.pk).update(is_active=False)
    deliver_batch()
    url = "/admin/webhooks/subscription/"
    chosen = {"action": "skip_waiting", "_selected_action": [sub.pk]}

    # when: the operator asks to skip them
    asked = admin_client.post(url, chosen)

    # then: first the count, and nothing skipped yet
    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Skip 3 deliveries" in page and sub.url in page
    assert Delivery.objects.filter(status="pending").count() == 3

    # when: confirmed
    done = admin_client.post(url, {**chosen, "post": "yes"}, follow=True)

    # then: given up, unsent, saying who; enabling sends nothing
    assert "3 waiting deliveries skipped." in done.content.decode()
    assert set(Delivery.objects.values_list("status", "last_error")) == {
        ("failed", "Skipped by admin, unsent.")
    }
    subscriptions_enable(subscription_ids=[sub.pk])
    deliver_batch()
    assert receiver_sim.received() == []
    index = admin_client.get("/admin/").content.decode()
    assert "Deliveries" in index and "Deliverys" not in index
