"""The staff-only stock levels API."""

import pytest

from inventory.tests.factories import product_with_stock
from orders.tests.helpers import place_order, reserve

pytestmark = pytest.mark.django_db

STOCK = "/api/stock/"


def test_staff_see_every_figure_of_the_stock_model(staff_client, customer):
    # given: 10 on hand, 3 of them reserved by an order
    product = product_with_stock(10, sku="KB-1")
    reserve(place_order(customer, (product.id, 3)))

    # when
    listed = staff_client.get(STOCK)
    one = staff_client.get(f"{STOCK}{product.id}/")

    # then
    assert listed.status_code == 200
    assert listed.json()["count"] == 1
    assert one.status_code == 200
    row = one.json()
    assert listed.json()["results"] == [row]
    assert {k: row[k] for k in row if k != "updated_at"} == {
        "product_id": product.id,
        "sku": "KB-1",
        "on_hand": 10,
        "version": 1,
        "reserved": 3,
        "committed": 0,
        "available": 7,
    }


def test_staff_filter_stock_by_sku_and_availability(staff_client):
    empty = product_with_stock(0, sku="EMPTY")
    full = product_with_stock(4, sku="FULL")

    def product_ids(query):
        return [r["product_id"] for r in staff_client.get(STOCK, query).json()["results"]]

    assert product_ids({"in_stock": "true"}) == [full.id]
    assert product_ids({"in_stock": "false"}) == [empty.id]
    assert product_ids({"sku": "EMPTY"}) == [empty.id]


def test_customers_are_refused_and_see_only_available_on_products(customer_client):
    product = product_with_stock(10)

    refused = customer_client.get(STOCK)
    seen = customer_client.get(f"/api/products/{product.id}/").json()

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert seen["available"] == 10
    assert not {"on_hand", "reserved", "committed", "version"} & set(seen)
