import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model

from inventory.tests.factories import product_with_stock
from orders.models import Order, OrderLog
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


# --- Times with seconds, statuses readable in both themes ------------------------------------

TIME = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)


def test_order_history_shows_each_entry_to_the_second(admin_client, order):
    # given: two entries of its history 41 seconds apart, within one minute
    order.logs.update(created_at=TIME)
    waiting = OrderLog.objects.create(
        order=order, from_status="pending", to_status="pending", event="stock_retry"
    )
    OrderLog.objects.filter(pk=waiting.pk).update(created_at=TIME + timedelta(seconds=41))
    Order.objects.filter(pk=order.pk).update(created_at=TIME)

    # when
    page = admin_client.get(f"/admin/orders/order/{order.id}/change/").content.decode()

    # then: the history inline and the order's own times carry their seconds
    history = re.search(r'id="logs-group".*', page, re.S).group(0)
    assert re.search(r"2026-03-14</span> <span[^>]*>09:26:53</span>", history)
    assert re.search(r"2026-03-14</span> <span[^>]*>09:27:34</span>", history)
    assert re.search(r'field-created_at">.*?2026-03-14 09:26:53', page, re.S)


def test_orders_list_shows_times_to_the_second_and_statuses_as_badges(admin_client, order):
    Order.objects.filter(pk=order.pk).update(created_at=TIME)

    page = admin_client.get("/admin/orders/order/").content.decode()

    assert re.search(r"2026-03-14</span> <span[^>]*>09:26:53</span>", page)
    assert '<span class="ops-badge ops-muted">Pending</span>' in page
    assert 'style="color:' not in page  # a fixed colour is unreadable in one of the themes
    assert "/static/core/admin.css" in page
