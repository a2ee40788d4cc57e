"""Workers take up ready orders from the database, a batch at a time.

An order is ready when its next step may run now (`ready_at` has come) and no worker holds
it. A claim is one statement: up to a batch of ready orders, oldest first, each held until
`claimed_until` (the lease). On PostgreSQL the candidates are locked FOR UPDATE SKIP LOCKED,
so workers on any number of machines claiming at once take disjoint batches without waiting
on each other; on SQLite its single writer serializes the claims. A worker that dies keeps
its orders only until their lease passes; the next claim takes them up. The broker's
messages only wake workers (orders.tasks.process_ready): no order is lost with a message.
"""

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.db import DatabaseError, connection, connections
from django.utils import timezone

from core.checkpoints import checkpoint
from orders.models import OPEN_STATUSES, Order

logger = logging.getLogger(__name__)

_CLAIM_SQL = """
UPDATE orders_order SET claimed_until = %s
WHERE id IN (
    SELECT id FROM orders_order
    WHERE status IN ({statuses}) AND ready_at IS NOT NULL AND ready_at <= %s
        AND (claimed_until IS NULL OR claimed_until < %s) AND cancel_requested_at IS NULL
    ORDER BY ready_at, id
    LIMIT %s{skip_locked}
)
RETURNING id
"""


def orders_claim(*, limit: int, seconds: float, now: datetime | None = None) -> list[Order]:
    """Claim up to `limit` ready orders for `seconds`; returns them with their payments,
    oldest first (one statement to claim, one to load). Autocommit: the claim is visible to
    every other worker at once."""
    now = now or timezone.now()
    until = now + timedelta(seconds=seconds)
    when = connection.ops.adapt_datetimefield_value
    skip_locked = (
        " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    )
    sql = _CLAIM_SQL.format(
        statuses=", ".join(["%s"] * len(OPEN_STATUSES)), skip_locked=skip_locked
    )
    params = [
        when(until),
        *OPEN_STATUSES,
        when(now),
        when(now),
        limit,
    ]
    checkpoint("orders.claiming")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = [pk for (pk,) in cursor.fetchall()]
    if not ids:
        return []
    checkpoint("orders.claimed", order_ids=ids)
    # Those still held by this claim: one re-pushed meanwhile (orders_ready_now) is not ours.
    return list(
        Order.objects.select_related("payment")
        .filter(pk__in=ids, claimed_until=until)
        .order_by("pk")
    )


@contextmanager
def orders_held(*, limit: int, seconds: float) -> Iterator[list[Order]]:
    """Claim up to `limit` ready orders and hold them while the block runs: a thread renews
    the claim every third of `seconds`, so a batch may take longer than one claim (its calls
    to the payment service and the warehouse all have timeouts) while a worker that dies
    lets its orders go within `seconds`. On leaving, the orders are released.

    Renewing and releasing only touch the orders whose claim is still the one this holder
    set: an order re-pushed meanwhile (orders_ready_now) or taken by another worker after a
    renewal failed is theirs, and stays so."""
    now = timezone.now()
    batch = orders_claim(limit=limit, seconds=seconds, now=now)
    if not batch:
        yield batch
        return
    lease = _Lease([o.pk for o in batch], until=now + timedelta(seconds=seconds), seconds=seconds)
    lease.start()
    try:
        yield batch
    finally:
        lease.stop()
        lease.release()


class _Lease(threading.Thread):
    def __init__(self, ids: list[int], *, until: datetime, seconds: float):
        super().__init__(name="orders-lease", daemon=True)
        self.ids, self.until, self.seconds = ids, until, seconds
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.wait(self.seconds / 3):
                until = timezone.now() + timedelta(seconds=self.seconds)
                try:
                    self._set(until)
                except DatabaseError as exc:
                    logger.warning(
                        "could not renew the claim on %s order(s) (%s: %s)",
                        len(self.ids),
                        type(exc).__name__,
                        exc,
                    )
                    connection.close()  # the next renewal opens a new connection
                else:
                    self.until = until
        finally:
            connections.close_all()  # this thread's own connections

    def stop(self) -> None:
        self.stopping.set()
        self.join()

    def release(self) -> None:
        self._set(None)

    def _set(self, until: datetime | None) -> None:
        Order.objects.filter(pk__in=self.ids, claimed_until=self.until).update(claimed_until=until)


def orders_ready_now(order_ids: list[int]) -> None:
    """The open orders' next step may run now, whoever held them (the reconciler's and the
    operators' re-push); a worker woken takes them up."""
    Order.objects.filter(pk__in=order_ids, status__in=OPEN_STATUSES).update(
        ready_at=timezone.now(), claimed_until=None
    )
