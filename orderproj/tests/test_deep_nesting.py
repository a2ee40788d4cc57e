"""A JSON body nested deeper than the API allows (core/api/parsers.py) is answered 400
`malformed_request` by every operation of the schema that takes a body, the anonymous token
exchange included, where Python's recursion limit used to end the request in a 500; a body at
the limit is parsed. On both backends."""

import re

import pytest
from rest_framework.test import APIClient

from core.api.parsers import MAX_DEPTH
from core.api.postman import openapi_schema
from inventory.tests.factories import product_with_stock
from webhooks.models import Subscription

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

DEEP = "[" * 950 + "]" * 950  # under 2 KB


def operations_taking_a_body() -> list[tuple[str, str]]:
    schema = openapi_schema()
    return [
        (method, path)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if method in ("post", "put", "patch") and "requestBody" in operation
    ]


def test_a_body_nested_too_deep_is_malformed_on_every_operation_taking_one(staff_client):
    # given: every operation that takes a body, with a product (or a webhook subscription) for
    # the ones that name one
    product = product_with_stock(5)
    subscription = Subscription.objects.create(
        url="https://example.com/hooks", event_types=["order.created"]
    )
    operations = operations_taking_a_body()
    assert ("post", "/api/auth/token/") in operations and ("post", "/api/orders/") in operations

    # when: each is sent the deeply nested body, as staff and anonymously
    answers = {}
    for method, path in operations:
        named = subscription if path.startswith("/api/webhooks/") else product
        url = re.sub(r"\{[^}]+\}", str(named.pk), path)
        for who, client in (("staff", staff_client), ("anonymous", APIClient())):
            response = getattr(client, method)(url, DEEP, content_type="application/json")
            answers[(who, method, path)] = (response.status_code, response.json())

    # then: the operations open to the caller refuse it as malformed; none fails
    for (who, method, path), (status, body) in answers.items():
        if who == "staff" or path == "/api/auth/token/":
            assert status == 400, (who, method, path, status, body)
            assert body["error"]["code"] == "malformed_request", (who, method, path, body)
            assert str(MAX_DEPTH) in body["error"]["message"]
        else:
            assert status == 401, (who, method, path, status, body)


def test_a_body_at_the_nesting_limit_is_parsed(customer_client):
    # given: an order body whose one item carries a value nested up to the limit
    product = product_with_stock(5)
    nested = "[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3)
    body = f'{{"items": [{{"product_id": {product.pk}, "quantity": 1, "note": {nested}}}]}}'

    # when: it is posted, then it is parsed and validated like any order (the extra key ignored)
    response = customer_client.post("/api/orders/", body, content_type="application/json")
    assert response.status_code == 202, response.json()
