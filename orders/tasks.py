import logging
import time

from celery import shared_task
from django.conf import settings

from core.tasks import DATABASE_ERRORS
from orders.claims import orders_held
from orders.dispatch import (
    FULFIL_ORDER,
    PROCESS_ORDER,
    PROCESS_READY,
    PURGE_IDEMPOTENCY_KEYS,
    RECONCILE,
    wake_order_workers,
    wake_order_workers_after_claims,
    wake_taken,
)
from orders.idempotency import idempotency_key_purge
from orders.models import Order
from orders.reconciler import reconcile
from orders.workflow import order_process, order_ship, orders_advance

logger = logging.getLogger(__name__)


@shared_task(name=PROCESS_READY, **DATABASE_ERRORS)
def process_ready() -> int:
    """Take up ready orders, a batch at a time (orders/claims.py), and advance each batch
    (orders.workflow.orders_advance), until none is ready or ORDER_BATCH_TIME_BUDGET_SECONDS
    have passed; then, if some wait for a retry, wake a worker when the soonest is due.
    Published by every new order (debounced), by each retry due, and by beat every
    ORDER_WAKE_INTERVAL_SECONDS (which takes up the orders of a worker that died). Returns
    how many orders it advanced."""
    wake_taken()
    deadline = time.monotonic() + settings.ORDER_BATCH_TIME_BUDGET_SECONDS
    advanced, waits, holding = 0, [], False
    try:
        while True:
            with orders_held(
                limit=settings.ORDER_BATCH_SIZE, seconds=settings.ORDER_CLAIM_SECONDS
            ) as batch:
                if not batch:
                    break
                holding = True
                steps = orders_advance(batch)
            holding = False
            advanced += len(batch)
            waits += [s.retry_in for s in steps.values() if not s.done and s.retry_in]
            if time.monotonic() >= deadline:
                wake_order_workers()  # out of time, and orders may still be ready: hand over
                break
    except DATABASE_ERRORS["autoretry_for"]:
        if holding:
            # The database went away mid-batch: the batch's orders stay claimed until the
            # claim runs out (it could not be released), and this task's retries may all
            # come sooner, so a worker is woken for then, whether or not beat is there to do
            # it. One such wake-up per claim period, however many batches failed.
            wake_order_workers_after_claims()
        raise
    finally:
        if waits:  # the batches that ended wait for a retry: a worker is woken for the first
            wake_order_workers(countdown=min(waits))
    return advanced


# One order's tasks: a cancelled order whose charge may be on its way, and messages published
# before the batches (they still come). The retry budgets are counted on the order and its
# payment, so such a task goes on with the budget where it was; `attempts_before` is accepted
# and ignored, as messages published earlier still carry it.


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
