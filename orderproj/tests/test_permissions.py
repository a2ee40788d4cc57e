"""Who may do what: anonymous, the customer who owns the order, another customer and staff,
against every operation of the API (the matrix must cover every operation of the schema)."""

import json

import pytest
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.tests.factories import CategoryFactory, ProductFactory
from core.api.postman import openapi_schema
from inventory.tests.factories import product_with_stock
from orders.tests.helpers import place_order
from webhooks.models import Subscription

ROLES = ("anonymous", "customer", "other", "staff")
ORDER_BODY = {"items": [{"product_id": "{product}", "quantity": 1}]}
PRODUCT_BODY = {"sku": "NEW-1", "name": "New", "price": "1.00"}

WEBHOOK_BODY = {"url": "https://example.com/hooks", "event_types": ["order.confirmed"]}
# The health check is for anyone: 200, or 503 when a dependency is down (here no worker or
# beat runs), never 401 or 403.
HEALTH = {200, 503}
# operation id: method, path, body, expected status for (anonymous, customer, other, staff)
MATRIX = {
    "health_retrieve": ("GET", "/api/health/", None, (HEALTH, HEALTH, HEALTH, HEALTH)),
    "auth_token_create": (
        "POST",
        "/api/auth/token/",
        {"username": "alice", "password": "pw-alice"},
        (200, 200, 200, 200),
    ),
    "products_list": ("GET", "/api/products/", None, (200, 200, 200, 200)),
    "products_retrieve": ("GET", "/api/products/{product}/", None, (200, 200, 200, 200)),
    "products_create": ("POST", "/api/products/", PRODUCT_BODY, (401, 403, 403, 201)),
    "products_update": ("PUT", "/api/products/{product}/", PRODUCT_BODY, (401, 403, 403, 200)),
    "products_partial_update": (
        "PATCH",
        "/api/products/{product}/",
        {"name": "Renamed"},
        (401, 403, 403, 200),
    ),
    "products_destroy": ("DELETE", "/api/products/{spare}/", None, (401, 403, 403, 204)),
    "categories_list": ("GET", "/api/categories/", None, (200, 200, 200, 200)),
    "categories_retrieve": ("GET", "/api/categories/{category}/", None, (200, 200, 200, 200)),
    "categories_create": ("POST", "/api/categories/", {"name": "New"}, (401, 403, 403, 201)),
    "stock_list": ("GET", "/api/stock/", None, (401, 403, 403, 200)),
    "stock_retrieve": ("GET", "/api/stock/{product}/", None, (401, 403, 403, 200)),
    "stock_movements_list": ("GET", "/api/stock/{product}/movements/", None, (401, 403, 403, 200)),
    "orders_list": ("GET", "/api/orders/", None, (401, 200, 200, 200)),
    "orders_create": ("POST", "/api/orders/", ORDER_BODY, (401, 202, 202, 202)),
    "orders_create_legacy": ("POST", "/orders/create", ORDER_BODY, (401, 202, 202, 202)),
    "orders_retrieve": ("GET", "/api/orders/{order}/", None, (401, 200, 404, 200)),
    "orders_logs_list": ("GET", "/api/orders/{order}/logs/", None, (401, 200, 404, 200)),
    "orders_cancel": ("POST", "/api/orders/{order}/cancel/", None, (401, 200, 404, 200)),
    "webhooks_list": ("GET", "/api/webhooks/", None, (401, 403, 403, 200)),
    "webhooks_create": ("POST", "/api/webhooks/", WEBHOOK_BODY, (401, 403, 403, 201)),
    "webhooks_retrieve": ("GET", "/api/webhooks/{webhook}/", None, (401, 403, 403, 200)),
    "webhooks_update": ("PUT", "/api/webhooks/{webhook}/", WEBHOOK_BODY, (401, 403, 403, 200)),
    "webhooks_partial_update": (
        "PATCH",
        "/api/webhooks/{webhook}/",
        {"is_active": False},
        (401, 403, 403, 200),
    ),
    "webhooks_destroy": ("DELETE", "/api/webhooks/{spare_webhook}/", None, (401, 403, 403, 204)),
}


def test_the_matrix_covers_every_operation_of_the_schema():
    schema = openapi_schema()
    operations = {
        operation["operationId"]
        for path in schema["paths"].values()
        for operation in path.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    assert operations == set(MATRIX)


@pytest.fixture
def world(customer, other_customer, staff_user):
    product = product_with_stock(10)
    return {
        "ids": {
            "product": product.id,
            "spare": ProductFactory().id,  # no order references it: it can be deleted
            "category": CategoryFactory().id,
            "order": place_order(customer, (product.id, 1)).id,
            "webhook": Subscription.objects.create(
                url="http://127.0.0.1:9/hooks", event_types=["order.created"]
            ).id,
            "spare_webhook": Subscription.objects.create(
                url="http://127.0.0.1:9/spare", event_types=["stock.low"]
            ).id,
        },
        "users": {"customer": customer, "other": other_customer, "staff": staff_user},
    }


def client_for(role: str, world) -> APIClient:
    client = APIClient()
    if role != "anonymous":
        token, _ = Token.objects.get_or_create(user=world["users"][role])
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def fill(value, ids: dict):
    if isinstance(value, str):
        return int(ids[value[1:-1]]) if value.startswith("{") else value.format(**ids)
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    return value


@pytest.mark.django_db
@override_settings(ORDER_CREATE_THROTTLE_RATE="")
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", sorted(MATRIX))
def test_permission_matrix(world, operation, role, settings):
    # given
    settings.HEALTH_WORKER_PING_TIMEOUT = 0.2
    method, path, body, expected = MATRIX[operation]
    client = client_for(role, world)

    # when
    response = client.generic(
        method,
        path.format(**world["ids"]),
        "" if body is None else json.dumps(fill(body, world["ids"])),
        content_type="application/json",
    )

    # then
    allowed = expected[ROLES.index(role)]
    assert response.status_code in (allowed if isinstance(allowed, set) else {allowed}), (
        response.content
    )
    if response.status_code >= 400 and operation != "health_retrieve":
        error = response.json()["error"]
        assert set(error) == {"code", "message", "details"}
        assert (
            error["code"]
            == {
                401: "not_authenticated",
                403: "permission_denied",
                404: "not_found",
            }[response.status_code]
        )


@pytest.mark.django_db
def test_customers_list_only_their_own_orders_and_staff_all(world):
    own = client_for("customer", world).get("/api/orders/").json()["results"]
    others = client_for("other", world).get("/api/orders/").json()["results"]
    everything = client_for("staff", world).get("/api/orders/").json()["results"]

    assert [o["id"] for o in own] == [world["ids"]["order"]]
    assert others == []
    assert [o["id"] for o in everything] == [world["ids"]["order"]]
