"""Subscriptions managed by staff in the admin and the API; deliveries read and redelivered
in the admin."""

import pytest
from django.contrib.auth import get_user_model

from inventory.tests.factories import product_with_stock
from orders.tests.helpers import place_order
from webhooks.delivery import deliver_batch
from webhooks.models import Delivery, Subscription

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    return client


def test_staff_subscribe_with_the_api_and_get_a_secret_to_verify_with(staff_client):
    response = staff_client.post(
        "/api/webhooks/",
        {"url": "https://example.com/hooks", "event_types": ["order.fulfilled", "order.created"]},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["event_types"] == ["order.created", "order.fulfilled"]  # the catalogue's order
    assert body["secret"].startswith("whsec_") and body["is_active"] is True
    assert Subscription.objects.get(pk=body["id"]).secret == body["secret"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x", "event_types": ["order.created"]}, "url"),
        ({"url": "not a url", "event_types": ["order.created"]}, "url"),
        ({"url": "https://example.com/x", "event_types": []}, "event_types"),
        ({"url": "https://example.com/x", "event_types": ["order.shipped"]}, "event_types"),
        ({"url": "https://example.com/x", "event_types": "order.created"}, "event_types"),
    ],
)
def test_a_bad_subscription_is_a_400_naming_the_field(staff_client, body, field):
    response = staff_client.post("/api/webhooks/", body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert not Subscription.objects.exists()


def test_turning_a_disabled_subscription_back_on_restarts_its_failing_clock(staff_client):
    sub = Subscription.objects.create(
        url="https://example.com/x",
        event_types=["order.created"],
        is_active=False,
        disabled_reason="Every attempt failed since ...",
    )

    response = staff_client.patch(f"/api/webhooks/{sub.pk}/", {"is_active": True}, format="json")

    assert response.status_code == 200, response.content
    sub.refresh_from_db()
    assert (sub.is_active, sub.disabled_reason, sub.failing_since) == (True, "", None)


@pytest.mark.django_db(transaction=True)
def test_operators_read_a_delivery_with_its_attempts_and_redeliver_it(
    admin_client, customer, receiver_sim
):
    # given: a subscription made in the admin, and one order's event delivered to it
    response = admin_client.post(
        "/admin/webhooks/subscription/add/",
        {
            "url": receiver_sim.hook_url(),
            "event_types": ["order.created"],
            "secret": "whsec_" + "B" * 32,
            "is_active": "on",
            "description": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    order = place_order(customer, (product_with_stock(5).id, 1))
    deliver_batch()
    delivery = Delivery.objects.get()
    assert delivery.status == "delivered"

    # when: an operator reads it, and redelivers it
    page = admin_client.get(f"/admin/webhooks/delivery/{delivery.pk}/change/").content.decode()
    listing = admin_client.get("/admin/webhooks/delivery/").content.decode()
    response = admin_client.post(
        "/admin/webhooks/delivery/",
        {"action": "redeliver", "_selected_action": [delivery.pk]},
        follow=True,
    )
    deliver_batch()

    # then: the page shows the attempt and the body; the event went out again
    assert "order.created" in page and f"/admin/orders/order/{order.pk}/change/" in page
    assert "HTTP 200" in listing
    assert "queued again" in response.content.decode()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert len(receiver_sim.received()) == 2
