"""Webhook metrics for /metrics, computed at scrape time from the outbox and deliveries."""

from collections.abc import Iterator

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from webhooks.models import Delivery, DeliveryStatus, Event, Subscription


class WebhookCollector:
    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        deliveries = GaugeMetricFamily(
            "orderproj_webhook_deliveries",
            "Webhook deliveries by status (pending: still to be sent or retried).",
            labels=["status"],
        )
        counts = dict(Delivery.objects.order_by().values_list("status").annotate(n=Count("id")))
        for status in DeliveryStatus.values:
            deliveries.add_metric([status], counts.get(status, 0))
        yield deliveries
        oldest = Delivery.objects.filter(
            status=DeliveryStatus.PENDING, subscription__is_active=True
        ).aggregate(oldest=Min("event__created_at"))["oldest"]
        undispatched = Event.objects.filter(dispatched_at__isnull=True).aggregate(
            oldest=Min("created_at")
        )["oldest"]
        waiting = [t for t in (oldest, undispatched) if t is not None]
        yield GaugeMetricFamily(
            "orderproj_webhook_oldest_pending_age_seconds",
            "Age of the oldest event still to be delivered to an active subscription (0: none).",
            value=(now - min(waiting)).total_seconds() if waiting else 0.0,
        )
        yield GaugeMetricFamily(
            "orderproj_webhook_subscriptions_disabled",
            "Webhook subscriptions disabled (after failing for WEBHOOK_DISABLE_AFTER_SECONDS, "
            "or by hand).",
            value=Subscription.objects.filter(is_active=False).count(),
        )
