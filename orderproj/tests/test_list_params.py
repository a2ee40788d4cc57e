"""A list's query parameters are checked, not ignored: an ordering it cannot sort by, a boolean
that is neither true nor false, or a page size that is not a whole number from 1 is a 400 in
the error shape (DRF and django-filter would answer 200 with the parameter dropped). A page
past the end stays a 404. On both backends."""

import pytest

from catalog.tests.factories import ProductFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

LISTS = ["/api/products/", "/api/categories/", "/api/orders/", "/api/stock/"]


def refused(response, parameter: str) -> str:
    assert response.status_code == 400, response.content
    body = response.json()["error"]
    assert body["code"] == "validation_error", body
    return " ".join(body["details"][parameter])


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("ordering", ["bogus", "-bogus", "id,bogus", "password", "id,"])
def test_an_ordering_the_list_cannot_sort_by_is_a_400(staff_client, path, ordering):
    message = refused(staff_client.get(path, {"ordering": ordering}), "ordering")

    assert "choose from" in message and "id" in message


@pytest.mark.parametrize(
    "path, ordering",
    [
        ("/api/products/", "-available,sku"),
        ("/api/categories/", "-name"),
        ("/api/orders/", "-created_at, id"),
        ("/api/stock/", "-product_id"),
    ],
)
def test_a_valid_ordering_is_accepted(staff_client, path, ordering):
    response = staff_client.get(path, {"ordering": ordering})

    assert response.status_code == 200, response.content


def test_the_products_are_sorted_as_asked(api_client):
    skus = [ProductFactory(sku=sku).sku for sku in ("B-1", "A-1", "C-1")]

    response = api_client.get("/api/products/", {"ordering": "-sku"})

    assert [p["sku"] for p in response.json()["results"]] == sorted(skus, reverse=True)


@pytest.mark.parametrize(
    "path, parameter",
    [
        ("/api/products/", "is_active"),
        ("/api/products/", "in_stock"),
        ("/api/stock/", "in_stock"),
    ],
)
@pytest.mark.parametrize("value", ["maybe", "yes", "2", "tru"])
def test_a_boolean_that_is_neither_true_nor_false_is_a_400(staff_client, path, parameter, value):
    message = refused(staff_client.get(path, {parameter: value}), parameter)

    assert message == "Enter true or false."


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "false", "False", "0"])
def test_true_and_false_still_filter(api_client, value):
    ProductFactory(sku="ON", is_active=True)
    ProductFactory(sku="OFF", is_active=False)

    response = api_client.get("/api/products/", {"is_active": value})

    wanted = "ON" if value.lower() in ("true", "1") else "OFF"
    assert [p["sku"] for p in response.json()["results"]] == [wanted]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("size", ["0", "-1", "abc", "1.5", ""])
def test_a_page_size_that_is_not_a_whole_number_from_1_is_a_400(staff_client, path, size):
    message = refused(staff_client.get(path, {"page_size": size}), "page_size")

    assert message == "Enter a whole number, 1 or more (more than 500 is cut to 500)."


def test_a_page_size_is_obeyed_and_a_large_one_is_cut_to_the_maximum(api_client):
    for n in range(3):
        ProductFactory(sku=f"P-{n}")

    assert len(api_client.get("/api/products/", {"page_size": "2"}).json()["results"]) == 2
    assert len(api_client.get("/api/products/", {"page_size": "100000"}).json()["results"]) == 3


@pytest.mark.parametrize("page", ["0", "-1", "abc", "1.5", ""])
def test_a_page_that_is_not_a_whole_number_from_1_is_a_400(api_client, page):
    message = refused(api_client.get("/api/products/", {"page": page}), "page")

    assert message == "Enter a whole number, 1 or more, or `last`."


def test_the_first_and_the_last_page_are_served(api_client):
    for n in range(3):
        ProductFactory(sku=f"P-{n}")

    first = api_client.get("/api/products/", {"page": "1", "page_size": "2"})
    last = api_client.get("/api/products/", {"page": "last", "page_size": "2"})

    assert [p["sku"] for p in first.json()["results"]] == ["P-0", "P-1"]
    assert [p["sku"] for p in last.json()["results"]] == ["P-2"]


def test_a_page_past_the_end_is_still_a_404(api_client):
    response = api_client.get("/api/products/", {"page": "99"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
