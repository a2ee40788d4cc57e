import logging
import time
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from core.tasks import DATABASE_ERRORS
from webhooks.delivery import deliveries_deliver, next_due_in
from webhooks.dispatch import DELIVER, PURGE, wake_taken, wake_webhook_workers_in
from webhooks.models import Event

logger = logging.getLogger(__name__)


@shared_task(name=DELIVER, **DATABASE_ERRORS)
def deliver() -> int:
    """Deliver what is due until nothing is or WEBHOOK_TIME_BUDGET_SECONDS have passed (what
    is in flight then is finished, each request within its deadline); then wake a worker
    for the soonest retry. Published after every commit that wrote events (debounced), for
    each retry due, and by beat every WEBHOOK_SWEEP_SECONDS (which takes up what a dead
    worker left). Returns how many requests it sent."""
    wake_taken()
    result = deliveries_deliver(budget=settings.WEBHOOK_TIME_BUDGET_SECONDS)
    due_in = next_due_in()
    if due_in is not None:
        wake_webhook_workers_in(due_in)
    return result.sent


@shared_task(name=PURGE, **DATABASE_ERRORS)
def purge() -> int:
    """Forget events older than WEBHOOK_RETENTION_DAYS with nothing left to send (their
    deliveries and attempts go with them). Returns how many events."""
    before = timezone.now() - timedelta(days=settings.WEBHOOK_RETENTION_DAYS)
    deadline = time.monotonic() + settings.WEBHOOK_TIME_BUDGET_SECONDS
    purged = 0
    while time.monotonic() < deadline:  # in chunks, each its own short statement
        old = Event.objects.filter(created_at__lt=before).exclude(deliveries__status="pending")
        chunk = list(old.order_by("id").values_list("pk", flat=True)[:5_000])
        if not chunk:
            break
        Event.objects.filter(pk__in=chunk).delete()
        purged += len(chunk)
    if purged:
        logger.info("purged %s webhook events older than %s", purged, before.isoformat())
    return purged
