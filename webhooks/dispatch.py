"""Waking the webhooks worker (the `webhooks` queue), by task name: the apps that write events
need not import tasks. A failure to publish is logged, never raised: the events are in the
outbox already, and beat's sweep (WEBHOOK_SWEEP_SECONDS) delivers them anyway."""

import logging

from django.conf import settings

from core.publisher import first_to_ask, forget_asked, publish_task

logger = logging.getLogger(__name__)

DELIVER = "webhooks.deliver"
PURGE = "webhooks.purge"
WAKE_PENDING = "webhooks:wake-pending"
RETRY_WAKE_PENDING = "webhooks:retry-wake-pending"


def _publish(countdown: float | None) -> bool:
    try:
        publish_task(DELIVER, countdown=countdown)
    except Exception as exc:
        logger.warning(
            "could not publish %s (%s: %s); the sweep delivers the events",
            DELIVER,
            type(exc).__name__,
            exc,
        )
        return False
    return True


def wake_webhook_workers() -> bool:
    """New events are committed: a worker takes them up now (one wake-up on its way at a
    time, so a burst of transitions publishes one)."""
    if not first_to_ask(WAKE_PENDING, seconds=settings.WEBHOOK_WAKE_DEBOUNCE_SECONDS):
        return True
    return _publish(None)


def wake_webhook_workers_in(seconds: float) -> bool:
    """A delivery is due again in `seconds` (a retry): one such wake-up at a time."""
    seconds = max(seconds, 0.0)
    if not first_to_ask(RETRY_WAKE_PENDING, seconds=max(seconds, 1.0)):
        return True
    return _publish(seconds)


def wake_taken() -> None:
    forget_asked(WAKE_PENDING)
