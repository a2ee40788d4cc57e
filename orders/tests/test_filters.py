"""Filtering, ordering and pagination of the orders list."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from inventory.tests.factories import product_with_stock
from orders.models import Order
from orders.tests.helpers import place_order

pytestmark = pytest.mark.django_db

ORDERS = "/api/orders/"


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [o["id"] for o in response.json()["results"]]


@pytest.fixture
def three_orders(customer):
    """A failed (declined), a failed (out of stock) and a pending order, a day apart."""
    product = product_with_stock(100, price="10.00")
    declined = place_order(customer, (product.id, 1))
    out_of_stock = place_order(customer, (product.id, 5))
    pending = place_order(customer, (product.id, 3))
    now = timezone.now()
    for order, reason, days_ago in (
        (declined, "payment_declined", 2),
        (out_of_stock, "out_of_stock", 1),
        (pending, "", 0),
    ):
        Order.objects.filter(pk=order.pk).update(
            status="failed" if reason else "pending",
            failure_reason=reason,
            created_at=now - timedelta(days=days_ago),
        )
    return declined, out_of_stock, pending


def test_filter_by_failure_reason(customer_client, three_orders):
    declined, out_of_stock, _ = three_orders

    assert ids(customer_client.get(ORDERS, {"failure_reason": "payment_declined"})) == [declined.id]
    both = customer_client.get(ORDERS, {"failure_reason": ["payment_declined", "out_of_stock"]})
    assert sorted(ids(both)) == sorted([declined.id, out_of_stock.id])


def test_filter_by_created_range(customer_client, three_orders):
    declined, out_of_stock, pending = three_orders
    now = timezone.now()

    recent = customer_client.get(
        ORDERS, {"created_after": (now - timedelta(days=1, hours=1)).isoformat()}
    )
    older = customer_client.get(ORDERS, {"created_before": (now - timedelta(hours=12)).isoformat()})
    window = customer_client.get(
        ORDERS,
        {
            "created_after": (now - timedelta(days=1, hours=1)).isoformat(),
            "created_before": (now - timedelta(hours=12)).isoformat(),
        },
    )

    assert sorted(ids(recent)) == sorted([out_of_stock.id, pending.id])
    assert sorted(ids(older)) == sorted([declined.id, out_of_stock.id])
    assert ids(window) == [out_of_stock.id]


def test_ordering_by_total_and_pagination(customer_client, three_orders):
    declined, out_of_stock, pending = three_orders

    page = customer_client.get(ORDERS, {"ordering": "-total", "page_size": 2}).json()
    rest = customer_client.get(ORDERS, {"ordering": "-total", "page_size": 2, "page": 2}).json()

    assert [o["id"] for o in page["results"]] == [out_of_stock.id, pending.id]
    assert [Decimal(o["total"]) for o in page["results"]] == [Decimal("50.00"), Decimal("30.00")]
    assert page["count"] == 3 and page["next"] and rest["previous"]
    assert [o["id"] for o in rest["results"]] == [declined.id]


@pytest.mark.parametrize(
    "query",
    [
        {"status": "shipped"},
        {"failure_reason": "bored"},
        {"created_after": "yesterday"},
    ],
)
def test_a_bad_filter_is_400_naming_it(customer_client, query):
    response = customer_client.get(ORDERS, query)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert set(query) <= set(response.json()["error"]["details"])


def test_a_page_past_the_end_is_404_in_the_error_shape(customer_client, three_orders):
    response = customer_client.get(ORDERS, {"page": 9})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_products_filter_by_active_and_order_by_price(api_client):
    cheap = product_with_stock(5, price="1.00")
    dear = product_with_stock(5, price="9.00")
    product_with_stock(5, price="5.00", is_active=False)

    active = api_client.get("/api/products/", {"is_active": "true", "ordering": "-price"})

    assert ids(active) == [dear.id, cheap.id]
