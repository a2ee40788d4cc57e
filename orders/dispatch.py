"""Publishing order work to Celery, by task name so services need not import tasks."""

import logging

from orderproj.celery import app

logger = logging.getLogger(__name__)

PROCESS_ORDER = "orders.process_order"


def enqueue_order_processing(order_id: int) -> bool:
    """Publish processing of an order. A broker failure is logged, not raised: the order is
    already committed as pending, and the caller's answer must not depend on the broker."""
    try:
        app.send_task(PROCESS_ORDER, args=[order_id])
    except Exception:
        logger.exception(
            "order %s persisted but not enqueued (broker unreachable)",
            order_id,
            extra={"order_id": order_id},
        )
        return False
    return True
