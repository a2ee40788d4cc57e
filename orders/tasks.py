import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from orders.dispatch import FULFIL_ORDER, PROCESS_ORDER, PURGE_IDEMPOTENCY_KEYS, RECONCILE
from orders.idempotency import idempotency_key_purge
from orders.models import Order
from orders.reconciler import reconcile
from orders.workflow import order_process, order_ship

logger = logging.getLogger(__name__)


# The database going away (a restart, a failover) is retried with backoff: every step of the
# workflow is safe to run again. Our own retries are bounded by the workflow's settings.
DATABASE_ERRORS = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": None,
}


# The retry budgets are counted on the order and its payment (orders.workflow), so a task
# re-published by the reconciler goes on with the budget where it was. `attempts_before` is
# accepted and ignored: messages published before the budgets moved there still carry it.


@shared_task(bind=True, name=PROCESS_ORDER, **DATABASE_ERRORS)
def process_order(self, order_id: int, attempts_before: int = 0) -> None:
    """Run the workflow; the workflow bounds the retries (settings ORDER_*_RETRY_MAX)."""
    try:
        step = order_process(order_id=order_id)
    except Order.DoesNotExist:
        logger.error(
            "order %s does not exist; nothing to process", order_id, extra={"order_id": order_id}
        )
        return
    if not step.done:
        raise self.retry(countdown=step.retry_in)


@shared_task(bind=True, name=FULFIL_ORDER, **DATABASE_ERRORS)
def fulfil_order(self, order_id: int, attempts_before: int = 0) -> None:
    """Push a confirmed order to the warehouse; the workflow bounds the retries."""
    try:
        step = order_ship(order_id=order_id)
    except Order.DoesNotExist:
        logger.error(
            "order %s does not exist; nothing to ship", order_id, extra={"order_id": order_id}
        )
        return
    if not step.done:
        raise self.retry(countdown=step.retry_in)


@shared_task(name=PURGE_IDEMPOTENCY_KEYS)
def purge_idempotency_keys() -> int:
    """celery-beat: delete the Idempotency-Keys past IDEMPOTENCY_KEY_TTL_HOURS."""
    deleted = idempotency_key_purge()
    logger.info("purged %s expired idempotency key(s)", deleted)
    return deleted


@shared_task(name=RECONCILE, acks_late=False, **DATABASE_ERRORS)
def reconcile_orders() -> dict:
    """celery-beat: the reconciler (orders/reconciler.py). Not acks_late: a run that dies is
    simply done again by the next scheduled one."""
    return reconcile().as_dict()
