"""Publishing work to Celery by task name (services need not import tasks).

Publishing happens inside web requests and right after commits, so it goes through the
bounded publisher (core.publisher: once, within CELERY_PUBLISH_TIMEOUT, and not at all for a
few seconds after the broker failed to answer). A failure is logged, never raised: the order
is already committed, and beat's wake-ups and the reconciler take it up.
"""

import logging
from typing import Any

from django.conf import settings

from core.publisher import first_to_ask, forget_asked, publish_task

logger = logging.getLogger(__name__)

PROCESS_READY = "orders.process_ready"
PROCESS_ORDER = "orders.process_order"
FULFIL_ORDER = "orders.fulfil_order"
PURGE_IDEMPOTENCY_KEYS = "orders.purge_idempotency_keys"
RECONCILE = "orders.reconcile"


def publish(
    task: str,
    *,
    args: list[Any],
    kwargs: dict[str, Any] | None = None,
    countdown: float | None = None,
    order_id: int | None = None,
) -> bool:
    """Publish one task (to run `countdown` seconds from now, if given); False (logged) when
    the broker did not take it in time, or did not answer moments ago (core.publisher)."""
    try:
        publish_task(task, args=args, kwargs=kwargs, countdown=countdown)
    except Exception as exc:
        logger.warning(
            "could not publish %s (%s: %s); the reconciler will retry",
            task,
            type(exc).__name__,
            exc,
            extra={"order_id": order_id, "task": task},
        )
        return False
    return True


# Set while a wake-up is on its way to the workers, so that a burst of new orders publishes
# one wake-up, not one each: the worker that takes it clears the key before it claims, so an
# order committed after the claim started publishes the next one.
WAKE_PENDING = "orders:wake-pending"


def wake_order_workers(*, countdown: float | None = None) -> bool:
    """Wake a worker to take up ready orders (orders.tasks.process_ready), now or in
    `countdown` seconds. A wake-up now is not published when one is on its way already."""
    if countdown is None and not first_to_ask(
        WAKE_PENDING, seconds=settings.ORDER_WAKE_DEBOUNCE_SECONDS
    ):
        return True
    return publish(PROCESS_READY, args=[], countdown=countdown)


# Set while a wake-up for when the claims of a failed batch run out is on its way.
WAKE_AFTER_CLAIMS_PENDING = "orders:wake-after-claims-pending"


def wake_order_workers_after_claims() -> bool:
    """Wake a worker once a claim taken now has run out (ORDER_CLAIM_SECONDS): a batch that
    could not release its orders leaves them to it. One at a time across all workers, so a
    long outage that fails batch after batch does not multiply wake-ups."""
    seconds = settings.ORDER_CLAIM_SECONDS
    if not first_to_ask(WAKE_AFTER_CLAIMS_PENDING, seconds=seconds):
        return True
    return publish(PROCESS_READY, args=[], countdown=seconds + 1)


def wake_taken() -> None:
    """A worker took the wake-up: the next new order wakes one again."""
    forget_asked(WAKE_PENDING)
