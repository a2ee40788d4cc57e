"""The operations summary on the admin's index page (see OrderAdmin: admin.site's
index_template): the last 24 h of orders as a chart per hour by outcome (orders/dashboard.py)
and by status and failure reason, and the products at or below LOW_STOCK_THRESHOLD."""

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django import template
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from inventory.selectors import stock_low
from orders.admin import STATUS_TONES
from orders.dashboard import order_outcome_chart
from orders.models import FailureReason, OrderStatus
from orders.selectors import order_counts_since

register = template.Library()

WINDOW = timedelta(hours=24)
LOW_STOCK_SHOWN = 20


@register.inclusion_tag("admin/orders/operations_dashboard.html", takes_context=True)
def operations_dashboard(context) -> dict[str, Any]:
    perms = context["perms"]
    now = timezone.now()
    since = now - WINDOW
    summary: dict[str, Any] = {"since": since, "threshold": settings.LOW_STOCK_THRESHOLD}
    if perms["orders"]["view_order"]:
        counts = order_counts_since(since=since)
        orders_url = reverse("admin:orders_order_changelist")

        def url(**filters: str) -> str:
            return f"{orders_url}?{urlencode({'created_at__gte': since.isoformat(), **filters})}"

        summary["orders"] = {
            "total": counts.total,
            "url": url(),
            "chart": order_outcome_chart(since=since, until=now),
            "by_status": [
                {
                    "label": OrderStatus(status).label,
                    "count": n,
                    "tone": STATUS_TONES[status],
                    "url": url(status__exact=status),
                }
                for status, n in counts.by_status.items()
            ],
            "by_failure_reason": [
                {
                    "label": FailureReason(reason).label,
                    "count": n,
                    "url": url(status__exact=OrderStatus.FAILED, failure_reason__exact=reason),
                }
                for reason, n in counts.by_failure_reason.items()
            ],
        }
    if perms["catalog"]["view_product"]:
        low = stock_low(threshold=settings.LOW_STOCK_THRESHOLD)
        summary["low_stock"] = {
            "count": low.count(),
            "shown": [
                {
                    "sku": level.product.sku,
                    "name": level.product.name,
                    "available": level.available,
                    "on_hand": level.on_hand,
                    "url": reverse("admin:catalog_product_change", args=[level.product_id]),
                }
                for level in low[:LOW_STOCK_SHOWN]
            ],
            "url": f"{reverse('admin:catalog_product_changelist')}?stock=low",
        }
    return summary
