import logging
import time

from celery import shared_task
from django.conf import settings

from core.tasks import DATABASE_ERRORS
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
from orders.reconciler import reconcile
from orders.scheduling import orders_held, orders_push_again, orders_ready_now
from orders.workflow import orders_advance

logger = logging.getLogger(__name__)


@shared_task(name=PROCESS_READY, **DATABASE_ERRORS)
def process_ready() -> int:
    """Take up ready orders, a batch at a time (orders/scheduling.py), and advance each batch
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


# The per-order tasks of the releases before the one engine. Messages published then may
# still come after an upgrade; each only hands its order to the engine: made ready (keeping
# its place) and a worker woken. `attempts_before` is accepted and ignored, as those messages
# carry it.


@shared_task(name=PROCESS_ORDER, **DATABASE_ERRORS)
def process_order(order_id: int, attempts_before: int = 0) -> None:
    """An order's processing, as published before the one engine: the engine takes it up."""
    orders_ready_now([order_id])
    wake_order_workers()


@shared_task(name=FULFIL_ORDER, **DATABASE_ERRORS)
def fulfil_order(order_id: int, attempts_before: int = 0) -> None:
    """A confirmed order's push, as published before the one engine: the engine pushes it."""
    orders_push_again([order_id])
    wake_order_workers()


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
