from decimal import Decimal

import pytest

from catalog.models import Category, Product, ProductCategory
from catalog.tests.factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db

PRODUCTS = "/api/products/"


def assert_error_shape(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


def test_anyone_can_list_products_paginated(api_client):
    # given
    ProductFactory.create_batch(3)

    # when
    response = api_client.get(PRODUCTS, {"page_size": 2})

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert len(body["results"]) == 2
    assert body["next"] is not None
    assert set(body["results"][0]) >= {"id", "sku", "name", "price", "is_active", "categories"}


def test_retrieve_returns_price_as_exact_decimal_string(api_client):
    product = ProductFactory(price=Decimal("19.99"))

    response = api_client.get(f"{PRODUCTS}{product.id}/")

    assert response.status_code == 200
    assert response.json()["price"] == "19.99"


def test_retrieve_unknown_product_is_404_in_error_shape(api_client):
    assert_error_shape(api_client.get(f"{PRODUCTS}999999/"), 404, "not_found")


def test_staff_creates_product_with_categories(staff_client):
    # given
    tools, gifts = CategoryFactory(name="Tools"), CategoryFactory(name="Gifts")

    # when
    response = staff_client.post(
        PRODUCTS,
        {"sku": "HAM-1", "name": "Hammer", "price": "15.50", "categories": [tools.id, gifts.id]},
        format="json",
    )

    # then
    assert response.status_code == 201, response.content
    product = Product.objects.get(sku="HAM-1")
    assert product.price == Decimal("15.50")
    assert set(product.categories.values_list("name", flat=True)) == {"Tools", "Gifts"}
    assert sorted(response.json()["categories"]) == sorted([tools.id, gifts.id])


def test_staff_reassigns_categories_with_patch(staff_client):
    product = ProductFactory()
    old, new = CategoryFactory(), CategoryFactory()
    product.categories.add(old)

    response = staff_client.patch(
        f"{PRODUCTS}{product.id}/", {"categories": [new.id]}, format="json"
    )

    assert response.status_code == 200, response.content
    assert list(product.categories.all()) == [new]


def test_customer_cannot_write_products(customer_client):
    error = assert_error_shape(
        customer_client.post(PRODUCTS, {"sku": "X", "name": "X", "price": "1"}, format="json"),
        403,
        "permission_denied",
    )
    assert "permission" in error["message"].lower()
    assert not Product.objects.exists()


def test_anonymous_write_is_401(api_client):
    response = api_client.post(PRODUCTS, {"sku": "X", "name": "X", "price": "1"}, format="json")
    assert_error_shape(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "No SKU", "price": "1.00"}, "sku"),
        ({"sku": "NP-1", "price": "1.00"}, "name"),
        ({"sku": "NP-1", "name": "No price"}, "price"),
        ({"sku": "NP-1", "name": "Negative", "price": "-0.01"}, "price"),
        ({"sku": "NP-1", "name": "Not a number", "price": "abc"}, "price"),
        ({"sku": "NP-1", "name": "Too precise", "price": "1.001"}, "price"),
        (
            {"sku": "NP-1", "name": "Unknown category", "price": "1", "categories": [987654]},
            "categories",
        ),
    ],
)
def test_bad_product_input_is_400_naming_the_field_and_writes_nothing(staff_client, payload, field):
    error = assert_error_shape(
        staff_client.post(PRODUCTS, payload, format="json"), 400, "validation_error"
    )
    assert field in error["details"]
    assert not Product.objects.exists()
    assert not ProductCategory.objects.exists()


def test_duplicate_sku_is_400_and_keeps_the_first_product(staff_client):
    ProductFactory(sku="DUP-1", name="First")

    error = assert_error_shape(
        staff_client.post(
            PRODUCTS, {"sku": "DUP-1", "name": "Second", "price": "2"}, format="json"
        ),
        400,
        "validation_error",
    )

    assert "sku" in error["details"]
    assert list(Product.objects.values_list("name", flat=True)) == ["First"]


def test_malformed_json_is_400(staff_client):
    response = staff_client.generic("POST", PRODUCTS, "{not json", content_type="application/json")
    assert_error_shape(response, 400, "malformed_request")
    assert not Product.objects.exists()


def test_wrong_content_type_is_415(staff_client):
    response = staff_client.generic("POST", PRODUCTS, "sku=X", content_type="text/plain")
    assert_error_shape(response, 415, "unsupported_media_type")


def test_filter_products_by_category(api_client):
    # given
    tools = CategoryFactory(name="Tools")
    hammer, saw, _cake = ProductFactory(), ProductFactory(), ProductFactory()
    hammer.categories.add(tools)
    saw.categories.add(tools)

    # when
    response = api_client.get(PRODUCTS, {"category": tools.id})

    # then
    assert response.status_code == 200
    assert sorted(p["id"] for p in response.json()["results"]) == sorted([hammer.id, saw.id])


def test_filter_by_unknown_category_is_400(api_client):
    error = assert_error_shape(
        api_client.get(PRODUCTS, {"category": 424242}), 400, "validation_error"
    )
    assert "category" in error["details"]


def test_search_matches_sku_or_name(api_client):
    ProductFactory(sku="ABC-1", name="Anvil")
    ProductFactory(sku="XYZ-1", name="Brush abc")
    ProductFactory(sku="QQQ-1", name="Other")

    response = api_client.get(PRODUCTS, {"search": "abc"})

    assert {p["sku"] for p in response.json()["results"]} == {"ABC-1", "XYZ-1"}


def test_categories_list_and_staff_create(api_client, staff_client):
    assert (
        staff_client.post("/api/categories/", {"name": "Tools"}, format="json").status_code == 201
    )
    assert_error_shape(
        staff_client.post("/api/categories/", {"name": "Tools"}, format="json"),
        400,
        "validation_error",
    )
    assert_error_shape(
        staff_client.post("/api/categories/", {}, format="json"), 400, "validation_error"
    )
    assert [c["name"] for c in api_client.get("/api/categories/").json()["results"]] == ["Tools"]
    assert Category.objects.count() == 1


def test_deleting_either_side_removes_the_link(staff_client):
    product, category = ProductFactory(), CategoryFactory()
    product.categories.add(category)
    other = ProductFactory()
    other.categories.add(category)

    assert staff_client.delete(f"{PRODUCTS}{product.id}/").status_code == 204
    assert ProductCategory.objects.filter(product_id=product.id).count() == 0
    category.delete()
    assert ProductCategory.objects.count() == 0
    assert Product.objects.filter(id=other.id).exists()
