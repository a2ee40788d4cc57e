"""The operator's admin: actions, links between orders, payments and products, stock on the
product screens, and the summary on the index page."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from inventory.tests.factories import product_with_stock
from orders.interventions import order_retry
from orders.models import Order, OrderLog
from orders.tests.helpers import place_order, run_to_completion
from tests.live import queue_length

# Retrying looks payments up over HTTP, which services refuse inside a transaction; the test
# client's requests must therefore not run inside the test's own transaction.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    return client


def processed_order(customer, product, *outcomes: str, payment_sim) -> Order:
    if outcomes:
        payment_sim.script(*outcomes)
    order = place_order(customer, (product.id, 1))
    run_to_completion(order.id)
    order.refresh_from_db()
    return order


def run_action(client, action: str, *orders: Order) -> str:
    response = client.post(
        "/admin/orders/order/",
        {"action": action, "_selected_action": [o.pk for o in orders], "index": 0},
        follow=True,
    )
    assert response.status_code == 200
    return response.content.decode()


def test_retry_action_reopens_failed_orders_and_reports_the_others(
    admin_client, customer, payment_sim
):
    # given
    product = product_with_stock(10)
    failed = processed_order(customer, product, "decline", payment_sim=payment_sim)
    confirmed = processed_order(customer, product, payment_sim=payment_sim)
    assert (failed.status, confirmed.status) == ("failed", "confirmed")

    # when
    page = run_action(admin_client, "retry_orders", failed, confirmed)

    # then
    assert f"Retried order(s) {failed.pk}: processing again." in page
    assert f"Not retried: order {confirmed.pk}: Order {confirmed.pk} cannot be retried" in page
    failed.refresh_from_db()
    confirmed.refresh_from_db()
    assert (failed.status, confirmed.status) == ("pending", "confirmed")
    assert failed.logs.get(event="retried").actor.username == "root"


def test_repush_action_publishes_fulfilment_of_confirmed_orders(
    admin_client, customer, payment_sim
):
    confirmed = processed_order(customer, product_with_stock(10), payment_sim=payment_sim)
    queued_before = queue_length()

    page = run_action(admin_client, "repush_fulfilment", confirmed)

    assert f"Order(s) {confirmed.pk} pushed to the warehouse again." in page
    assert queue_length() == queued_before + 1
    assert confirmed.logs.get(event="fulfilment_repushed").actor.username == "root"


def test_order_and_payments_link_to_each_other_after_a_retry(admin_client, customer, payment_sim):
    # given: a declined order retried, so it has had two payments
    failed = processed_order(customer, product_with_stock(10), "decline", payment_sim=payment_sim)
    old_payment_id = failed.payment_id
    order = order_retry(order=failed, actor=get_user_model().objects.get(username="root"))

    # when
    order_page = admin_client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    old_payment_page = admin_client.get(
        f"/admin/payments/payment/{old_payment_id}/change/"
    ).content.decode()
    new_payment_page = admin_client.get(
        f"/admin/payments/payment/{order.payment_id}/change/"
    ).content.decode()

    # then
    assert (
        f'/admin/payments/payment/{order.payment_id}/change/">payment {order.payment_id}'
        in order_page
    )
    assert (
        f'/admin/payments/payment/{old_payment_id}/change/">payment {old_payment_id}' in order_page
    )
    assert f"/admin/orders/order/{order.pk}/change/" in old_payment_page
    assert "an earlier payment, before a retry" in old_payment_page
    assert f"/admin/orders/order/{order.pk}/change/" in new_payment_page
    assert "an earlier payment" not in new_payment_page


def test_product_page_shows_its_stock_and_links_to_its_orders(admin_client, customer, payment_sim):
    # given
    product = product_with_stock(10, sku="LINKED")
    mine = processed_order(customer, product, payment_sim=payment_sim)
    other = processed_order(customer, product_with_stock(10), payment_sim=payment_sim)

    # when
    page = admin_client.get(f"/admin/catalog/product/{product.pk}/change/").content.decode()
    orders_url = f"/admin/orders/order/?product={product.pk}"
    orders_page = admin_client.get(orders_url).content.decode()

    # then: the stock inline (on hand 10, 1 committed, 9 available) and the link
    assert "stock level" in page.lower()
    assert re.search(r'field-on_hand">\s*<p>10</p>', page)
    assert re.search(r'field-available">\s*<p>9</p>', page)
    assert orders_url in page
    assert f"/admin/orders/order/{mine.pk}/change/" in orders_page
    assert f"/admin/orders/order/{other.pk}/change/" not in orders_page
    assert "LINKED" in orders_page  # the filter in use is shown, so it can be cleared


def test_products_list_shows_available_and_filters_low_stock(admin_client, settings):
    settings.LOW_STOCK_THRESHOLD = 5
    low = product_with_stock(3, sku="LOW-ONE")
    plenty = product_with_stock(50, sku="PLENTY")

    every = admin_client.get("/admin/catalog/product/").content.decode()
    only_low = admin_client.get("/admin/catalog/product/?stock=low").content.decode()

    assert re.search(r'class="field-available"><b class="ops-alert">3</b>', every)
    assert re.search(r'class="field-available">50<', every)
    assert low.sku in only_low and plenty.sku not in only_low


def test_index_page_summarises_the_last_24_hours_and_low_stock(
    admin_client, customer, payment_sim, settings
):
    # given: today one confirmed and one declined order; one order from two days ago
    settings.LOW_STOCK_THRESHOLD = 5
    product = product_with_stock(50, sku="PLENTY")
    processed_order(customer, product, payment_sim=payment_sim)
    processed_order(customer, product, "decline", payment_sim=payment_sim)
    old = processed_order(customer, product, payment_sim=payment_sim)
    two_days_ago = timezone.now() - timedelta(days=2)
    Order.objects.filter(pk=old.pk).update(created_at=two_days_ago)
    OrderLog.objects.filter(order=old).update(created_at=two_days_ago)
    product_with_stock(2, sku="ALMOST-GONE")

    # when
    page = admin_client.get("/admin/").content.decode()

    # then
    assert "Orders, last 24 h: 2" in page
    assert '<td data-status="Confirmed">1</td>' in page
    assert '<td data-status="Failed">1</td>' in page
    assert '<td data-failure-reason="Payment Declined">1</td>' in page
    assert '<td data-failure-reason="Out Of Stock">0</td>' in page
    assert "Low stock (available ≤ 5): 1 product" in page
    assert "ALMOST-GONE" in page and "PLENTY" not in page
    assert "/admin/catalog/product/?stock=low" in page


def test_index_page_shows_no_summary_to_staff_without_those_permissions(client):
    user = get_user_model().objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(user)

    page = client.get("/admin/").content.decode()

    assert "Orders, last 24 h" not in page and "Low stock" not in page
