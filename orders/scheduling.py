"""When each order's next step may run, and who holds it meanwhile: the one module that
writes the scheduling columns of an order (`ready_at`, `claimed_until`, `progressed_at`, and
the attempt counters `stock_attempts`, `ship_attempts`, `step_errors`), and the retry
policies every step backs off by.

An order is ready when its next step may run now (`ready_at` has come) and no worker holds
it. A claim is one statement: up to a batch of ready orders, oldest first, each held until
`claimed_until` (the lease). On PostgreSQL the candidates are locked FOR UPDATE SKIP LOCKED,
so workers on any number of machines claiming at once take disjoint batches without waiting
on each other; on SQLite its single writer serializes the claims. A worker that dies keeps
its orders only until their lease passes; the next claim takes them up. The broker's
messages only wake workers (orders.tasks.process_ready): no order is lost with a message.

Every time here is the database's (core/clock.py): a worker on a machine whose clock is off
neither takes orders another worker holds nor lets its own go early.
"""

import logging
import random
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from django.conf import settings
from django.db import DatabaseError, connection, connections
from django.db.models import F
from django.db.models.functions import Coalesce, Least

from core.checkpoints import checkpoint
from core.clock import NOW, at, now_expression, read
from orders.lock_objects import orders_lock_cte
from orders.models import OPEN_STATUSES, Order

logger = logging.getLogger(__name__)


# --- retry policies ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How a step retries: at most `max_attempts` attempts in all, the wait after the n-th
    (from 0) base * 2**n seconds, capped at `cap`, times a random factor in
    [1, 1 + ORDER_RETRY_JITTER)."""

    max_attempts: int
    base: float
    cap: float

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts

    def delay(self, attempt: int) -> float:
        """Seconds to wait after `attempt` attempts (0 for the first retry's wait)."""
        jitter = 1 + random.random() * settings.ORDER_RETRY_JITTER
        return round(min(self.cap, self.base * 2**attempt) * jitter, 3)


def stock_policy() -> RetryPolicy:
    """Reservations for want of stock: the first and ORDER_STOCK_RETRY_MAX retries, then
    failed/out_of_stock."""
    return RetryPolicy(
        settings.ORDER_STOCK_RETRY_MAX + 1,
        settings.ORDER_STOCK_RETRY_BASE_SECONDS,
        settings.ORDER_STOCK_RETRY_MAX_DELAY,
    )


def payment_policy() -> RetryPolicy:
    """Tries at settling a charge (a request or a lookup, answered or not), then the
    reconciler asks on its passes."""
    return RetryPolicy(
        settings.ORDER_PAYMENT_RETRY_MAX,
        settings.ORDER_PAYMENT_RETRY_BASE_SECONDS,
        settings.ORDER_PAYMENT_RETRY_MAX_DELAY,
    )


def ship_policy() -> RetryPolicy:
    """Pushes to the warehouse: the first and ORDER_SHIP_RETRY_MAX retries, then the
    reconciler pushes again later."""
    return RetryPolicy(
        settings.ORDER_SHIP_RETRY_MAX + 1,
        settings.ORDER_SHIP_RETRY_BASE_SECONDS,
        settings.ORDER_SHIP_RETRY_MAX_DELAY,
    )


def error_policy() -> RetryPolicy:
    """Steps that raised an unexpected error, then left to the reconciler and operators."""
    return RetryPolicy(
        settings.ORDER_ERROR_RETRY_MAX,
        settings.ORDER_ERROR_RETRY_BASE_SECONDS,
        settings.ORDER_ERROR_RETRY_MAX_DELAY,
    )


# --- claims ----------------------------------------------------------------------------------

_CLAIM_SQL = """
UPDATE orders_order SET claimed_until = {until}
WHERE id IN (
    SELECT id FROM orders_order
    WHERE status IN ({statuses}) AND ready_at IS NOT NULL AND ready_at <= {now}
        AND (claimed_until IS NULL OR claimed_until < {now}) AND cancel_requested_at IS NULL
    ORDER BY ready_at, id
    LIMIT %s{skip_locked}
)
RETURNING id, claimed_until
"""


def orders_claim(*, limit: int, seconds: float, now: datetime | None = None) -> list[Order]:
    """Claim up to `limit` ready orders for `seconds`; returns them with their payments,
    oldest first (one statement to claim, one to load). Autocommit: the claim is visible to
    every other worker at once. The database's clock decides, unless `now` is given."""
    clock = at(now)
    until_sql, until_params = clock.sql(plus=seconds)
    now_sql, now_params = clock.sql()
    skip_locked = (
        " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    )
    sql = _CLAIM_SQL.format(
        until=until_sql,
        statuses=", ".join(["%s"] * len(OPEN_STATUSES)),
        now=now_sql,
        skip_locked=skip_locked,
    )
    params = [*until_params, *OPEN_STATUSES, *now_params, *now_params, limit]
    checkpoint("orders.claiming")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        claimed = dict(cursor.fetchall())
    if not claimed:
        return []
    checkpoint("orders.claimed", order_ids=sorted(claimed))
    until = read(next(iter(claimed.values())))
    # Those still held by this claim (a claim taken from them meanwhile is not ours).
    return list(
        Order.objects.select_related("payment")
        .filter(pk__in=claimed, claimed_until=until)
        .order_by("pk")
    )


@contextmanager
def orders_held(*, limit: int, seconds: float) -> Iterator[list[Order]]:
    """Claim up to `limit` ready orders and hold them while the block runs: a thread renews
    the claim every third of `seconds`, so a batch may take longer than one claim (its calls
    to the payment service and the warehouse all have timeouts) while a worker that dies
    lets its orders go within `seconds`. On leaving, the orders are released.

    Renewing and releasing only touch the orders whose claim is still the one this holder
    set: an order another worker took after a renewal failed is theirs, and stays so."""
    batch = orders_claim(limit=limit, seconds=seconds)
    if not batch:
        yield batch
        return
    lease = _Lease([o.pk for o in batch], until=batch[0].claimed_until, seconds=seconds)
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
                checkpoint("orders.lease.renewing", order_ids=self.ids)
                try:
                    self.until = self._renew()
                except DatabaseError as exc:
                    logger.warning(
                        "could not renew the claim on %s order(s) (%s: %s)",
                        len(self.ids),
                        type(exc).__name__,
                        exc,
                    )
                    connection.close()  # the next renewal opens a new connection
        finally:
            connections.close_all()  # this thread's own connections

    def stop(self) -> None:
        self.stopping.set()
        self.join()

    def _renew(self) -> datetime:
        """The claim's new end (the one it had, if it is no longer this holder's)."""
        until_sql, until_params = at().sql(plus=self.seconds)
        marks = ", ".join(["%s"] * len(self.ids))
        with connection.cursor() as cursor:
            cursor.execute(
                f'UPDATE "orders_order" SET "claimed_until" = {until_sql}'
                f" WHERE id IN ({marks}) AND claimed_until = %s RETURNING claimed_until",
                [*until_params, *self.ids, connection.ops.adapt_datetimefield_value(self.until)],
            )
            renewed = cursor.fetchone()
        # The column was just set, so it reads back as a time.
        return cast(datetime, read(renewed[0])) if renewed else self.until

    def release(self) -> None:
        Order.objects.filter(pk__in=self.ids, claimed_until=self.until).update(claimed_until=None)


# --- when the next step may run -------------------------------------------------------------


def orders_ready_now(order_ids: Sequence[int], *, now: datetime | None = None) -> int:
    """The open orders' next step may run now (the reconciler's and the operators' re-push);
    a worker woken takes them up. An order already due keeps its place in the queue (its
    `ready_at`, if earlier), and one a worker holds stays with it until its claim ends.
    Returns how many."""
    when = now_expression(now=now)
    return Order.objects.filter(pk__in=order_ids, status__in=OPEN_STATUSES).update(
        ready_at=Least(Coalesce(F("ready_at"), when), when)
    )


_RETRY_SQL = """
WITH {locked}
UPDATE orders_order SET progressed_at = {now}, ready_at = CASE id {ready} END{counter}
FROM locked
WHERE id = locked_id AND status = %s AND payment_id IN ({ids})
RETURNING id, ready_at{returned}
"""


def orders_retry_later(
    orders: Sequence[Order],
    *,
    status: str,
    retry_in: Mapping[int, float],
    counter: str | None = None,
) -> list[Order]:
    """One statement, for those of `orders` still in `status` with the payment the caller
    read: progress, the time a worker may take each up again (`retry_in` seconds from now),
    and one more to their `counter` (stock_attempts, ship_attempts, step_errors); returns
    them, their instances updated. In the caller's transaction, if one is open."""
    if not orders:
        return []
    if counter not in (None, "stock_attempts", "ship_attempts", "step_errors"):
        raise ValueError(f"not an attempt counter: {counter}")
    clock = at()
    now_sql, now_params = clock.sql()
    whens, when_params = [], []
    for order in orders:
        sql, params = clock.sql(plus=retry_in[order.pk])
        whens.append(f"WHEN %s THEN {sql}")
        when_params += [order.pk, *params]
    marks = ", ".join(["%s"] * len(orders))
    locked, lock_params = orders_lock_cte(o.pk for o in orders)
    sql = _RETRY_SQL.format(
        locked=locked,
        now=now_sql,
        ready=" ".join(whens),
        counter=f", {counter} = {counter} + 1" if counter else "",
        ids=marks,
        returned=f", {counter}" if counter else "",
    )
    params = [
        *lock_params,
        *now_params,
        *when_params,
        status,
        *(o.payment_id for o in orders),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        counted = {row[0]: row[1:] for row in cursor.fetchall()}
    for order in orders:
        if order.pk in counted:
            order.ready_at = read(counted[order.pk][0])
            if counter:
                setattr(order, counter, counted[order.pk][1])
    return [order for order in orders if order.pk in counted]


def orders_park(orders: Sequence[Order], *, status: str) -> list[Order]:
    """No worker step left for those of `orders` still in `status`, for now: the reconciler
    (or an operator) takes them from here. One statement; returns them, updated."""
    if not orders:
        return []
    locked, lock_params = orders_lock_cte(o.pk for o in orders)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {locked} UPDATE orders_order SET ready_at = NULL FROM locked"
            " WHERE id = locked_id AND status = %s RETURNING id",
            [*lock_params, status],
        )
        parked = {pk for (pk,) in cursor.fetchall()}
    for order in orders:
        if order.pk in parked:
            order.ready_at = None
    return [order for order in orders if order.pk in parked]


def orders_push_again(order_ids: Sequence[int], *, now: datetime | None = None) -> int:
    """orders_ready_now for confirmed orders whose pushes to the warehouse went unanswered
    (the reconciler's and the operators' re-push): each gets one more push within its
    budget, whatever it spent before. Returns how many."""
    last = ship_policy().max_attempts - 1
    Order.objects.filter(pk__in=order_ids, ship_attempts__gt=last).update(ship_attempts=last)
    return orders_ready_now(order_ids, now=now)


@dataclass(frozen=True)
class Ahead:
    """The next step of the orders a transition moves runs at once, in the same batch (a
    reserved order's charge, a confirmed order's push): its retry is scheduled with the
    transition itself, `retry_in` seconds from now (by order id), and with `counter` its
    attempt counted. The write-ahead of that step, in the transition's own UPDATE: a task
    cut right after it leaves the order waiting its backoff, its attempt spent."""

    retry_in: Mapping[int, float]
    counter: str | None = None


class _Increment:
    def __repr__(self) -> str:
        return "+1"


INCREMENT = _Increment()


def transition_schedule(
    *, target: str, event: str, ahead: Ahead | None = None
) -> dict[str, object]:
    """The scheduling columns a transition to `target` sets beside the status (orders/
    transitions.py writes them in its guarded UPDATE, with the database's time for
    "now"): a worker may take an open order up at once for its next step (or, `ahead`, once
    the retry of the step it goes on with at once is due), an order that ended has none; the
    step errors counted start afresh, and an operator's retry starts every budget afresh."""
    schedule: dict[str, object] = {
        "progressed_at": NOW,
        "ready_at": NOW if target in OPEN_STATUSES else None,
    }
    if ahead is not None and target in OPEN_STATUSES:
        schedule["ready_at"] = ahead
        if ahead.counter:
            schedule[ahead.counter] = INCREMENT
    # Progress: the errors counted are those since the order last moved.
    schedule["step_errors"] = 0
    if event == "retried":
        schedule.update(stock_attempts=0, ship_attempts=0)
    return schedule
