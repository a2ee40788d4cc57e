"""The dashboard's chart: the last 24 h of orders per hour by outcome, an inline SVG drawn
on the server from one aggregate query; on PostgreSQL and, marked embedded, on SQLite."""

import itertools
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from inventory.tests.factories import product_with_stock
from orders.dashboard import order_outcomes_by_hour
from orders.models import Order
from orders.tests.helpers import place_order

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

RECT = re.compile(
    r'<rect class="bar-(\w+)" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" '
    r'data-hour="([^"]+)" data-outcome="(\w+)" data-count="(\d+)">'
)


@pytest.fixture
def admin_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    return client


@pytest.fixture
def product():
    return product_with_stock(100)


def order_created(customer, product, ago: timedelta, status: str, reason: str = "") -> Order:
    """An order that is now in `status`, created `ago` (the chart reads only these columns)."""
    order = place_order(customer, (product.id, 1))
    Order.objects.filter(pk=order.pk).update(
        status=status, failure_reason=reason, created_at=timezone.now() - ago
    )
    return Order.objects.get(pk=order.pk)


def hour_of(order: Order) -> str:
    return order.created_at.replace(minute=0, second=0, microsecond=0).isoformat()


def bars(page: str) -> dict[tuple[str, str], dict[str, float]]:
    found = {}
    for css, x, y, _width, height, hour, outcome, count in RECT.findall(page):
        assert css == outcome
        found[hour, outcome] = {
            "count": int(count),
            "x": float(x),
            "y": float(y),
            "height": float(height),
        }
    return found


def test_dashboard_chart_draws_each_hours_orders_by_outcome(admin_client, customer, product):
    # given: orders of the last 24 h in three hours, and one older
    two_hours = timedelta(hours=2, minutes=5)
    done = [
        order_created(customer, product, two_hours, "fulfilled"),
        order_created(customer, product, two_hours, "fulfilled"),
        order_created(customer, product, two_hours, "confirmed"),
    ]
    order_created(customer, product, two_hours, "failed", "payment_declined")
    cancelled = order_created(customer, product, timedelta(hours=7), "cancelled")
    in_flight = [
        order_created(customer, product, timedelta(0), "pending"),
        order_created(customer, product, timedelta(0), "reserved"),
    ]
    order_created(customer, product, timedelta(hours=26), "fulfilled")

    # when
    page = admin_client.get("/admin/").content.decode()

    # then: one bar per outcome and hour, stacked, heights in proportion to the counts
    drawn = bars(page)
    earlier, now = hour_of(done[0]), hour_of(in_flight[0])
    assert {key: bar["count"] for key, bar in drawn.items()} == {
        (earlier, "done"): 3,
        (earlier, "failed"): 1,
        (hour_of(cancelled), "cancelled"): 1,
        (now, "in_flight"): 2,
    }
    done_bar, failed_bar = drawn[earlier, "done"], drawn[earlier, "failed"]
    assert done_bar["height"] == pytest.approx(3 * failed_bar["height"], abs=0.05)
    assert failed_bar["y"] + failed_bar["height"] == pytest.approx(done_bar["y"], abs=0.05)
    assert failed_bar["x"] == done_bar["x"]
    cancelled_bar = drawn[hour_of(cancelled), "cancelled"]
    assert drawn[now, "in_flight"]["x"] > done_bar["x"] > cancelled_bar["x"]

    # and: a title and a description for screen readers, a legend with the totals
    chart = re.search(r'<td colspan="2" class="ops-chart".*?</td>', page, re.S).group(0)
    assert 'role="img"' in chart
    assert '<title id="orders-per-hour-title">Orders per hour, last 24 h (UTC), by outcome' in chart
    assert re.search(r"<desc[^>]*>7 orders created since .*2 still in flight\.</desc>", chart)
    legend = dict(re.findall(r'<li data-outcome="(\w+)">.*?<strong>(\d+)</strong>', chart))
    assert legend == {"done": "3", "failed": "1", "cancelled": "1", "in_flight": "2"}
    assert "<script" not in chart


def test_the_chart_is_counted_by_one_query(customer, product, django_assert_num_queries):
    order_created(customer, product, timedelta(hours=3), "fulfilled")
    order_created(customer, product, timedelta(hours=1), "failed", "out_of_stock")
    now = timezone.now()

    with django_assert_num_queries(1):
        hours = order_outcomes_by_hour(since=now - timedelta(hours=24), until=now)

    assert len(hours) in (24, 25)  # every hour of the window, the first and last partial
    assert sum(h.total for h in hours) == 2
    starts = [h.hour for h in hours]
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(starts))


def test_an_empty_day_draws_no_bars_and_says_so(admin_client):
    page = admin_client.get("/admin/").content.decode()

    assert bars(page) == {}
    assert re.search(r"<desc[^>]*>0 orders created since ", page)
