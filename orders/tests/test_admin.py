import pytest
from django.contrib.auth import get_user_model

from inventory.tests.factories import product_with_stock
from orders.tests.helpers import place_order

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    return client


@pytest.fixture
def order(customer):
    return place_order(customer, (product_with_stock(5, sku="FIND-ME").id, 2))


@pytest.mark.parametrize(
    "url",
    [
        "/admin/orders/order/",
        "/admin/orders/orderlog/",
        "/admin/inventory/stocklevel/",
        "/admin/payments/payment/",
        "/admin/catalog/product/",
        "/admin/catalog/category/",
        "/admin/orders/order/?status__exact=pending",
        "/admin/orders/order/?failure_reason=",
    ],
)
def test_operator_screens_render(admin_client, order, url):
    assert admin_client.get(url).status_code == 200


def test_order_page_shows_lines_payment_and_logs_read_only(admin_client, order):
    page = admin_client.get(f"/admin/orders/order/{order.id}/change/").content.decode()

    assert "FIND-ME" in page  # the line's product
    assert f"/admin/payments/payment/{order.payment_id}/change/" in page
    assert "created" in page  # the log entry
    assert 'name="_save"' not in page  # nothing to edit


@pytest.mark.parametrize("term", ["ORDER_ID", "alice", "FIND-ME", "not-a-number"])
def test_order_search_by_id_customer_or_sku(admin_client, order, term):
    term = str(order.id) if term == "ORDER_ID" else term
    page = admin_client.get("/admin/orders/order/", {"q": term})
    assert page.status_code == 200
    found = f"/admin/orders/order/{order.id}/change/" in page.content.decode()
    assert found is (term != "not-a-number")
