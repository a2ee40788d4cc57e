import json

import pytest

from catalog.tests.factories import ProductFactory
from inventory.tests.factories import product_with_stock
from orders.models import Order, OrderLine, OrderLog
from orders.tests.helpers import place_order
from payments.models import Payment
from tests.live import queue_length

pytestmark = pytest.mark.django_db


ORDERS = "/api/orders/"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


def assert_nothing_persisted():
    assert not Order.objects.exists()
    assert not OrderLine.objects.exists()
    assert not OrderLog.objects.exists()
    assert not Payment.objects.exists()


@pytest.mark.parametrize("path", [ORDERS, "/orders/create", "/orders/create/"])
def test_create_answers_202_with_the_order_and_its_location(
    customer_client, path, django_capture_on_commit_callbacks
):
    # given
    keyboard = product_with_stock(5, price="89.00")
    mouse = product_with_stock(5, price="29.50")

    queued_before = queue_length()

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = customer_client.post(
            path,
            {
                "items": [
                    {"product_id": keyboard.id, "quantity": 2},
                    {"product_id": mouse.id, "quantity": 1},
                ]
            },
            format="json",
        )
        assert queue_length() == queued_before  # nothing published before the commit

    # then
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert body["failure_reason"] == ""
    assert body["total"] == "207.50"
    assert response["Location"].endswith(f"/api/orders/{body['id']}/")
    assert {(i["product_id"], i["quantity"], i["unit_price"]) for i in body["items"]} == {
        (keyboard.id, 2, "89.00"),
        (mouse.id, 1, "29.50"),
    }
    assert body["payment"]["status"] == "pending"
    assert queue_length() == queued_before + 1  # processing published after it
    order = Order.objects.get(pk=body["id"])
    assert [(log.from_status, log.to_status, log.event) for log in order.logs.all()] == [
        ("", "pending", "created")
    ]


def test_price_is_snapshotted_at_creation(customer):
    product = product_with_stock(5, price="10.00")
    order = place_order(customer, (product.id, 3))

    product.price = "99.00"
    product.save()

    line = order.lines.get()
    assert str(line.unit_price) == "10.00"
    order.refresh_from_db()
    assert str(order.total) == "30.00"


def test_customer_lists_only_their_own_orders(customer, other_customer, customer_client):
    product = product_with_stock(10)
    mine = place_order(customer, (product.id, 1))
    place_order(other_customer, (product.id, 1))

    response = customer_client.get(ORDERS)

    assert response.status_code == 200
    assert [o["id"] for o in response.json()["results"]] == [mine.id]


def test_staff_lists_every_order_and_filters_by_status(customer, other_customer, staff_client):
    product = product_with_stock(10)
    first, second = (
        place_order(customer, (product.id, 1)),
        place_order(other_customer, (product.id, 1)),
    )
    Order.objects.filter(pk=second.pk).update(status="cancelled")

    everything = staff_client.get(ORDERS).json()["results"]
    pending = staff_client.get(ORDERS, {"status": "pending"}).json()["results"]

    assert {o["id"] for o in everything} == {first.id, second.id}
    assert [o["id"] for o in pending] == [first.id]


def test_another_customers_order_is_404(customer, other_client):
    order = place_order(customer, (product_with_stock(10).id, 1))

    assert_error(other_client.get(f"{ORDERS}{order.id}/"), 404, "not_found")
    assert_error(other_client.get(f"{ORDERS}{order.id}/logs/"), 404, "not_found")


def test_order_logs_endpoint_lists_history_oldest_first(customer, customer_client):
    order = place_order(customer, (product_with_stock(10).id, 1))

    response = customer_client.get(f"{ORDERS}{order.id}/logs/")

    assert response.status_code == 200
    entries = response.json()["results"]
    assert [(e["from_status"], e["to_status"], e["event"]) for e in entries] == [
        ("", "pending", "created")
    ]
    assert entries[0]["created_at"].endswith("Z")


def test_anonymous_is_401(api_client):
    assert_error(api_client.get(ORDERS), 401, "not_authenticated")
    assert_error(api_client.post(ORDERS, {"items": []}, format="json"), 401, "not_authenticated")


def test_token_exchange(api_client, customer):
    response = api_client.post(
        "/api/auth/token/", {"username": "alice", "password": "pw-alice"}, format="json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api_client.get(ORDERS).status_code == 200


def test_token_exchange_with_wrong_password_is_400(api_client, customer):
    response = api_client.post(
        "/api/auth/token/", {"username": "alice", "password": "nope"}, format="json"
    )
    assert_error(response, 400, "validation_error")


LINE_0 = ("items", "0")
WHOLE_LIST = ("items", "non_field_errors")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"items": [{"product_id": 424242, "quantity": 1}]}, (*LINE_0, "product_id")),
        ({"items": [{"product_id": "INACTIVE", "quantity": 1}]}, (*LINE_0, "product_id")),
        ({"items": [{"product_id": "ACTIVE", "quantity": 0}]}, (*LINE_0, "quantity")),
        ({"items": [{"product_id": "ACTIVE", "quantity": -3}]}, (*LINE_0, "quantity")),
        ({"items": [{"product_id": "ACTIVE", "quantity": 10**12}]}, (*LINE_0, "quantity")),
        ({"items": [{"product_id": "ACTIVE", "quantity": 1.5}]}, (*LINE_0, "quantity")),
        ({"items": [{"product_id": "ACTIVE", "quantity": "2"}]}, (*LINE_0, "quantity")),
        ({"items": [{"product_id": "ACTIVE", "quantity": True}]}, (*LINE_0, "quantity")),
        ({"items": [{"product_id": "ACTIVE", "quantity": None}]}, (*LINE_0, "quantity")),
        ({"items": [{"product_id": "ACTIVE"}]}, (*LINE_0, "quantity")),
        ({"items": [{"product_id": "1", "quantity": 1}]}, (*LINE_0, "product_id")),
        ({"items": [{"product_id": -1, "quantity": 1}]}, (*LINE_0, "product_id")),
        ({"items": [{"product_id": 2**70, "quantity": 1}]}, (*LINE_0, "product_id")),
        (
            {
                "items": [
                    {"product_id": "ACTIVE", "quantity": 1},
                    {"product_id": "ACTIVE", "quantity": 2},
                ]
            },
            ("items", "1", "product_id"),
        ),
        (
            {
                "items": [
                    {"product_id": "ACTIVE", "quantity": 1},
                    {"product_id": 424242, "quantity": 1},
                ]
            },
            ("items", "1", "product_id"),
        ),
        ({"items": [{"product_id": "ACTIVE", "quantity": 1}] * 101}, WHOLE_LIST),
        ({"items": []}, WHOLE_LIST),
        ({"items": "everything"}, WHOLE_LIST),
        ({"items": None}, WHOLE_LIST),
        ({"items": [5]}, (*LINE_0, "non_field_errors")),
        ({}, WHOLE_LIST),
        ([], ("non_field_errors",)),
    ],
)
def test_bad_order_input_is_400_at_its_place_and_persists_nothing(customer_client, body, where):
    # given
    active = product_with_stock(10)
    inactive = product_with_stock(10, is_active=False)
    raw = (
        json.dumps(body).replace('"ACTIVE"', str(active.id)).replace('"INACTIVE"', str(inactive.id))
    )

    # when
    response = customer_client.generic("POST", ORDERS, raw, content_type="application/json")

    # then: the messages are at the path named, and nowhere else
    error = assert_error(response, 400, "validation_error")
    found = error["details"]
    for step in where:
        found = found[step]
    assert found and all(isinstance(message, str) for message in found), error
    assert len(error["details"]) == 1 and len(error["details"].get("items", {0: 0})) == 1, error
    assert_nothing_persisted()


def test_malformed_json_is_400_and_persists_nothing(customer_client):
    response = customer_client.generic(
        "POST", ORDERS, '{"items": [', content_type="application/json"
    )
    assert_error(response, 400, "malformed_request")
    assert_nothing_persisted()


def test_wrong_content_type_is_415_and_persists_nothing(customer_client):
    product = product_with_stock(10)
    response = customer_client.generic(
        "POST",
        ORDERS,
        f"items[0][product_id]={product.id}&items[0][quantity]=1",
        content_type="application/x-www-form-urlencoded",
    )
    assert_error(response, 415, "unsupported_media_type")
    assert_nothing_persisted()


def test_products_api_shows_available(api_client, customer):
    product = product_with_stock(10)
    ProductFactory()  # no stock row yet: nothing available
    place_order(customer, (product.id, 3))  # pending orders hold nothing yet

    results = api_client.get("/api/products/").json()["results"]

    assert next((p["id"], p["available"]) for p in results) == (product.id, 10)
    assert results[1]["available"] == 0
    in_stock = api_client.get("/api/products/", {"in_stock": "true"}).json()["results"]
    assert [p["id"] for p in in_stock] == [product.id]
