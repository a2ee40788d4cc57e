"""GET /api/stock/{product_id}/movements/: a product's ledger, for staff."""

import pytest
from django.db import transaction

from catalog.tests.factories import ProductFactory
from inventory.services import stock_confirm, stock_reserve
from inventory.tests.factories import product_with_stock

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def url(product_id) -> str:
    return f"/api/stock/{product_id}/movements/"


@pytest.fixture
def moved_product():
    """A product reserved for order 7, then order 7's units committed, and reserved for 8."""
    product = product_with_stock(10)
    with transaction.atomic():
        stock_reserve(orders={7: {product.pk: 2}, 8: {product.pk: 1}})
    with transaction.atomic():
        stock_confirm(orders={7: {product.pk: 2}})
    return product


def test_staff_read_a_products_movements_newest_first(staff_client, moved_product):
    response = staff_client.get(url(moved_product.pk))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 4
    rows = [
        (
            r["reason"],
            r["reserved_change"],
            r["committed_change"],
            r["available_after"],
            r["order_id"],
        )
        for r in body["results"]
    ]
    assert rows == [
        ("commit", -2, 2, 7, 7),
        ("reserve", 1, 0, 7, 8),
        ("reserve", 2, 0, 8, 7),
        ("opening", 0, 0, 10, None),
    ]
    assert body["results"][0]["actor"] is None


def test_movements_filter_by_reason_order_and_time(staff_client, moved_product):
    def reasons(**params) -> list[str]:
        response = staff_client.get(url(moved_product.pk), params)
        assert response.status_code == 200, response.content
        return [r["reason"] for r in response.json()["results"]]

    assert reasons(reason="reserve") == ["reserve", "reserve"]
    assert reasons(reason=["reserve", "commit"], order_id=7) == ["commit", "reserve"]
    assert reasons(created_after="2000-01-01T00:00:00Z") == [
        "commit",
        "reserve",
        "reserve",
        "opening",
    ]
    assert reasons(created_before="2000-01-01T00:00:00Z") == []


@pytest.mark.parametrize(
    "params",
    [
        {"reason": "stolen"},
        {"order_id": "abc"},
        {"order_id": str(2**63)},
        {"order_id": "0"},
        {"created_after": "yesterday"},
    ],
)
def test_bad_filters_are_a_400_naming_them(staff_client, moved_product, params):
    response = staff_client.get(url(moved_product.pk), params)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_error"
    assert set(response.json()["error"]["details"]) == set(params)


@pytest.mark.parametrize("product_id", ["missing", "abc", str(2**63), "-1"])
def test_a_product_without_stock_is_a_404(staff_client, product_id):
    if product_id == "missing":
        product_id = ProductFactory().pk

    response = staff_client.get(url(product_id))

    assert response.status_code == 404, response.content


def test_customers_may_not_read_the_ledger(customer_client, moved_product):
    assert customer_client.get(url(moved_product.pk)).status_code == 403
