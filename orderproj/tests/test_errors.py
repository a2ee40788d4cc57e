"""Every 4xx and 5xx of the API in the one error shape (docs/DESIGN.md):
{"error": {"code": "...", "message": "...", "details": {...}}}."""

import json

import pytest
from django.db import connection
from django.test import Client, RequestFactory

from core.api.errors import server_error_view
from inventory.tests.factories import product_with_stock
from orders.tests.conftest import TableLock

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    assert "Traceback" not in response.content.decode()
    return body["error"]


def test_400_validation_names_every_bad_field(customer_client):
    product = product_with_stock(5)

    error = assert_error(
        customer_client.post(
            "/api/orders/",
            {"items": [{"product_id": product.id, "quantity": 0}, {"quantity": 1}]},
            format="json",
        ),
        400,
        "validation_error",
    )

    assert error["message"] == "Invalid input."
    assert error["details"] == {  # per line (by index), per field
        "items": {
            "0": {"quantity": ["Ensure this value is greater than or equal to 1."]},
            "1": {"product_id": ["This field is required."]},
        }
    }


def test_400_for_a_host_not_allowed():
    response = Client(HTTP_HOST="evil.example").get("/api/products/")

    assert_error(response, 400, "bad_request")


def test_400_for_a_form_with_too_many_fields(api_client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    body = "&".join(f"f{i}=x" for i in range(20))

    response = api_client.generic(
        "POST", "/api/auth/token/", body, content_type="application/x-www-form-urlencoded"
    )

    assert_error(response, 400, "malformed_request")


def test_401_without_credentials_names_the_scheme(api_client):
    response = api_client.get("/api/orders/")

    error = assert_error(response, 401, "not_authenticated")
    assert "credentials" in error["message"]
    assert response["WWW-Authenticate"] == "Token"


def test_401_for_an_invalid_token_even_where_anyone_may_read(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    assert_error(api_client.get("/api/products/"), 401, "authentication_failed")


def test_403_for_a_customer_on_staff_endpoints(customer_client):
    assert_error(customer_client.get("/api/stock/"), 403, "permission_denied")


@pytest.mark.parametrize("path", ["/api/nothing-here/", "/api/orders/999999/", "/orders/nope"])
def test_404_under_the_api_paths(customer_client, path):
    response = customer_client.get(path)

    assert_error(response, 404, "not_found")
    # written alike, whether Django's URL resolver or a view of DRF answered
    assert response.content.startswith(b'{"error":{"code":"not_found"'), response.content


def test_404_for_a_malformed_or_huge_id(customer_client):
    assert_error(customer_client.get("/api/orders/abc/"), 404, "not_found")
    assert_error(customer_client.get(f"/api/orders/{2**80}/"), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/orders/", "GET, POST, HEAD, OPTIONS"),
        ("GET", "/orders/create", "POST, OPTIONS"),
        ("PUT", "/api/categories/1/", "GET, HEAD, OPTIONS"),
    ],
)
def test_405_says_what_is_allowed(staff_client, method, path, allowed):
    response = staff_client.generic(method, path)

    error = assert_error(response, 405, "method_not_allowed")
    assert method in error["message"]
    assert response["Allow"] == allowed


def test_406_for_an_unsupported_accept_header(customer_client):
    response = customer_client.get("/api/orders/", HTTP_ACCEPT="application/xml")

    assert_error(response, 406, "not_acceptable")


def test_415_for_a_body_that_is_not_json(customer_client):
    response = customer_client.generic(
        "POST", "/api/orders/", "<items/>", content_type="application/xml"
    )

    error = assert_error(response, 415, "unsupported_media_type")
    assert "application/xml" in error["message"]


def test_500_from_a_view_is_logged_and_answered_in_the_shape(customer_client, monkeypatch, caplog):
    # given: a bug, here a selector that raises
    def broken(**kwargs):
        raise RuntimeError("bug: secret internals")

    monkeypatch.setattr("orders.selectors.order_list", broken)

    # when
    response = customer_client.get("/api/orders/")

    # then: the client learns nothing of the internals; the log has them
    error = assert_error(response, 500, "server_error")
    assert "secret" not in response.content.decode()
    assert "it has been logged" in error["message"]
    assert "bug: secret internals" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_503_when_the_database_cannot_answer_and_nothing_leaks(customer_client):
    # given: the orders table locked by another session, and this one not waiting for it
    with TableLock("orders_order", mode="ACCESS EXCLUSIVE"), connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '200ms'")
        try:
            # when
            response = customer_client.get("/api/orders/")
        finally:
            cursor.execute("RESET lock_timeout")

    # then: a 503 to retry, not a 500
    error = assert_error(response, 503, "service_unavailable")
    assert "try again" in error["message"]
    assert response["Retry-After"] == "5"
    assert "lock" not in response.content.decode()


def test_500_outside_the_views_is_answered_in_the_shape():
    request = RequestFactory().get("/api/orders/")

    assert_error(server_error_view(request), 500, "server_error")


def test_pages_outside_the_api_keep_djangos_html(client):
    response = client.get("/admin/nothing-here/")

    assert response.status_code in (302, 404)
    assert not response["Content-Type"].startswith("application/json")
