"""Integers past the 64-bit range of the ids, in a path or a filter, never reach the database:
SQLite cannot bind them (an OverflowError, a 500 before). An id names nothing: 404; a filter
value is an invalid choice: 400. On both backends."""

import pytest

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

PAST = ["9223372036854775808", "99999999999999999999999", "-9223372036854775809"]


@pytest.mark.parametrize("value", PAST)
@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/products/{}/"),
        ("patch", "/api/products/{}/"),
        ("delete", "/api/products/{}/"),
        ("get", "/api/categories/{}/"),
        ("get", "/api/stock/{}/"),
        ("get", "/api/orders/{}/"),
        ("get", "/api/orders/{}/logs/"),
        ("post", "/api/orders/{}/cancel/"),
    ],
)
def test_an_id_past_the_64_bit_range_names_nothing(staff_client, method, path, value):
    response = getattr(staff_client, method)(path.format(value), {}, format="json")

    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("value", [*PAST, "9223372036854775807"])
def test_a_category_filter_past_the_range_or_unknown_is_an_invalid_choice(api_client, value):
    response = api_client.get("/api/products/", {"category": value})

    assert response.status_code == 400, response.content
    body = response.json()["error"]
    assert body["code"] == "validation_error" and "category" in body["details"]
