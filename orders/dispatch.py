"""Publishing work to Celery by task name (services need not import tasks).

Publishing happens inside web requests and right after commits, so it goes through the
bounded publisher (core.publisher). A failure is logged, never raised: the order is
already committed, and the reconciler re-publishes work that makes no progress.
"""

import logging
from typing import Any

from core.publisher import publisher

logger = logging.getLogger(__name__)

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
    the broker did not take it in time."""
    try:
        publisher().send_task(task, args=args, kwargs=kwargs, countdown=countdown)
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


def enqueue_order_processing(order_id: int) -> bool:
    """Publish processing of an order (its retry budgets are kept on the order)."""
    return publish(PROCESS_ORDER, args=[order_id], order_id=order_id)


def enqueue_order_fulfilment(order_id: int, *, countdown: float | None = None) -> bool:
    """Publish the push of a confirmed order to the warehouse, to run `countdown` seconds
    from now if given (its retry budget is kept on the order)."""
    return publish(FULFIL_ORDER, args=[order_id], countdown=countdown, order_id=order_id)
