"""The payments list an operator reads beside the two sidebars at 1366 px: the provider's
reference whole (to look the charge up at the provider), amount with its currency, status
as a badge, times with seconds, and the order one click away."""

import re
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model

from inventory.tests.factories import product_with_stock
from orders.tests.helpers import place_order
from payments.models import Payment

pytestmark = pytest.mark.django_db

REFERENCE = "ch_7037952850dd46a993b980db79de412e"  # as the provider makes them: 35 characters


@pytest.fixture
def admin_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    return client


@pytest.fixture
def payment(customer) -> Payment:
    order = place_order(customer, (product_with_stock(5).id, 1))
    Payment.objects.filter(pk=order.payment_id).update(
        status="captured",
        provider_reference=REFERENCE,
        attempts=1,
        updated_at=datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC),
    )
    return Payment.objects.select_related("order").get(pk=order.payment_id)


def test_payments_list_shows_the_whole_provider_reference(admin_client, payment):
    page = admin_client.get("/admin/payments/payment/").content.decode()

    cell = re.search(r'<td class="field-reference">(.*?)</td>', page, re.S).group(1)
    assert cell == f'<span class="ops-ident">{REFERENCE}</span>'


def test_payments_list_reads_in_few_narrow_columns(admin_client, payment):
    page = admin_client.get("/admin/payments/payment/").content.decode()

    head = re.search(r"<thead>.*?</thead>", page, re.S).group(0)
    assert re.findall(r'<th scope="col"\s+class="[^"]*column-(\w+)', head) == [
        "id",
        "order_list_link",
        "amount_with_currency",
        "coloured_status",
        "attempts",
        "reference",
        "updated_at",
    ]
    assert f'<td class="field-amount_with_currency">{payment.amount} USD</td>' in page
    assert '<span class="ops-badge ops-done">captured</span>' in page
    order_id = payment.order.pk
    assert f'<a href="/admin/orders/order/{order_id}/change/">{order_id}</a>' in page
    assert re.search(r"2026-03-14</span> <span[^>]*>09:26:53</span>", page)
