"""The order state machine: the table of every allowed transition, and the one way to apply
one, to a single order or to a set of orders at once.

A transition is decided by someone who read an order in some status, holding some payment;
it is applied only if the order is still so. One UPDATE, guarded by that status and payment,
moves every order of the set that still qualifies and returns which did; the stock change
that belongs to the transition and the log rows follow in the same transaction, set-based.
An order that moved on meanwhile is left alone and reported as not moved, so a decision made
for one state is never applied to another: the caller reads the order again and decides
afresh.

Locks: the orders' rows first (in ascending id order when there are several,
orders/lock_objects.py), then stock rows in ascending product id order (inventory's).
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.db import connection, transaction
from django.db.models import prefetch_related_objects

from core.clock import NOW, at, read
from core.errors import Conflict
from inventory.services import (
    Shortage,
    stock_confirm,
    stock_release,
    stock_release_committed,
    stock_reserve,
    stock_ship,
)
from inventory.types import ShippedLevel
from orders.events import log_many
from orders.lock_objects import orders_for_update, orders_lock_cte
from orders.models import (
    FailureReason,
    Order,
    OrderEvent,
    OrderStatus,
)
from orders.scheduling import INCREMENT, Ahead, transition_schedule
from orders.selectors import LINES_WITH_PRODUCTS
from payments.services import payments_abandon
from webhooks.models import EventType
from webhooks.outbox import outbox_write

S = OrderStatus
E = OrderEvent


@dataclass(frozen=True)
class Transition:
    event: OrderEvent
    source: OrderStatus
    target: OrderStatus


# Every status change an order can make. `created` is not here: an order is born pending.
TRANSITIONS: tuple[Transition, ...] = (
    Transition(E.RESERVED, S.PENDING, S.RESERVED),
    Transition(E.OUT_OF_STOCK, S.PENDING, S.FAILED),
    Transition(E.CANCELLED, S.PENDING, S.CANCELLED),
    Transition(E.CONFIRMED, S.RESERVED, S.CONFIRMED),
    Transition(E.PAYMENT_DECLINED, S.RESERVED, S.FAILED),
    Transition(E.PAYMENT_ERROR, S.RESERVED, S.FAILED),
    Transition(E.RESERVATION_EXPIRED, S.RESERVED, S.FAILED),
    Transition(E.CANCELLED, S.RESERVED, S.CANCELLED),
    Transition(E.FULFILLED, S.CONFIRMED, S.FULFILLED),
    Transition(E.CANCELLED, S.CONFIRMED, S.CANCELLED),
    # The one way out of an end state, for operators only (orders.interventions.order_retry).
    Transition(E.RETRIED, S.FAILED, S.PENDING),
)
_BY_KEY: dict[tuple[OrderEvent, str], Transition] = {(t.event, t.source): t for t in TRANSITIONS}
# The event each end of a transition tells other systems of (docs/webhooks.md).
EVENT_TYPES = {
    S.RESERVED: EventType.ORDER_RESERVED,
    S.CONFIRMED: EventType.ORDER_CONFIRMED,
    S.FAILED: EventType.ORDER_FAILED,
    S.CANCELLED: EventType.ORDER_CANCELLED,
    S.FULFILLED: EventType.ORDER_FULFILLED,
}
FAILURE_REASONS = {
    E.OUT_OF_STOCK: FailureReason.OUT_OF_STOCK,
    E.PAYMENT_DECLINED: FailureReason.PAYMENT_DECLINED,
    E.PAYMENT_ERROR: FailureReason.PAYMENT_ERROR,
    E.RESERVATION_EXPIRED: FailureReason.RESERVATION_EXPIRED,
}


class Moved(list):
    """The orders a transition moved (a list), and, for a reservation, the shortages of those
    still pending that did not get their stock (`short`, by order id)."""

    def __init__(self, orders=(), short: dict[int, list[Shortage]] | None = None):
        super().__init__(orders)
        self.short = short or {}


class IllegalTransition(Conflict):
    code = "illegal_transition"

    def __init__(self, event: str, source: str):
        super().__init__(
            f"No transition {event} from {source}.", details={"event": event, "status": source}
        )


def transition_for(event: OrderEvent, source: str) -> Transition:
    try:
        return _BY_KEY[(event, source)]
    except KeyError:
        raise IllegalTransition(event, source) from None


def _holds(orders: list[Order]) -> dict[int, dict[int, int]]:
    """Units per product of each order (its lines read in one query for all of them, unless
    they were loaded already)."""
    prefetch_related_objects(orders, LINES_WITH_PRODUCTS)
    holds: dict[int, dict[int, int]] = {}
    for order in orders:
        units = holds[order.pk] = defaultdict(int)
        for line in order.lines.all():
            units[line.product_id] += line.quantity
    return holds


def _allocate(orders: list[Order], source: str, actor_id: int | None) -> tuple[list[Order], dict]:
    """For a reservation: those of `orders` still in `source` with the payment the caller
    read (their rows locked, in id order) that get stock, first come first served by id,
    each all its lines or none; and the shortages of the others."""
    current = orders_for_update(order.pk for order in orders)
    candidates = sorted(
        (o for o in orders if current.get(o.pk) == (source, o.payment_id)), key=lambda o: o.pk
    )
    allocation = stock_reserve(orders=_holds(candidates), actor_id=actor_id)
    fit = set(allocation.reserved)
    return [o for o in candidates if o.pk in fit], allocation.short


def _stock_change(
    transition: Transition,
    moved: list[Order],
    levels: Mapping[int, ShippedLevel] | None,
    actor_id: int | None,
) -> None:
    """The stock change that belongs to the transition, for every order moved at once."""
    source, target = transition.source, transition.target
    if source == S.RESERVED and target == S.CONFIRMED:
        stock_confirm(orders=_holds(moved), actor_id=actor_id)
    elif source == S.RESERVED:  # failed or cancelled: the reservation is given back
        stock_release(orders=_holds(moved), actor_id=actor_id)
    elif source == S.CONFIRMED and target == S.FULFILLED:
        stock_ship(orders=_holds(moved), levels=levels or {}, actor_id=actor_id)
    elif source == S.CONFIRMED:  # cancelled before shipping
        stock_release_committed(orders=_holds(moved), actor_id=actor_id)


_UPDATE_SQL = """
WITH {locked}
UPDATE orders_order SET status = %s, failure_reason = %s, updated_at = {now}{assignments}
FROM locked
WHERE id = locked_id AND status = %s AND payment_id IN ({payment_ids})
RETURNING id, updated_at
"""


def _guarded_update(
    transition: Transition, orders: Sequence[Order], *, columns: dict[str, Any]
) -> tuple[set[int], datetime | None]:
    """The UPDATE of the orders still in the transition's source with the payment the caller
    read; returns their ids, and the time it was made (the database's)."""
    clock = at()
    now_sql, now_params = clock.sql()
    assignments, values = "", []
    for column, value in columns.items():
        if value is NOW:
            assignments += f", {column} = {now_sql}"
            values += now_params
        elif value is INCREMENT:
            assignments += f", {column} = {column} + 1"
        elif isinstance(value, Ahead):
            whens = []
            for order in orders:
                sql, when_params = clock.sql(plus=value.retry_in[order.pk])
                whens.append(f"WHEN %s THEN {sql}")
                values += [order.pk, *when_params]
            assignments += f", {column} = CASE id {' '.join(whens)} END"
        else:
            assignments += f", {column} = %s"
            values.append(value)
    locked, lock_params = orders_lock_cte(order.pk for order in orders)
    params: list[Any] = [
        *lock_params,
        transition.target,
        FAILURE_REASONS.get(transition.event, ""),
        *now_params,
        *values,
        transition.source,
        *(order.payment_id for order in orders),
    ]
    sql = _UPDATE_SQL.format(
        locked=locked,
        now=now_sql,
        assignments=assignments,
        payment_ids=", ".join(["%s"] * len(orders)),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return {order_id for order_id, _ in rows}, read(rows[0][1]) if rows else None


def order_transition(
    *,
    orders: Sequence[Order],
    event: OrderEvent,
    source: str,
    actor=None,
    message: str = "",
    data: dict[str, Any] | None = None,
    data_of: Mapping[int, dict[str, Any]] | None = None,
    message_of: Mapping[int, str] | None = None,
    levels: Mapping[int, ShippedLevel] | None = None,
    ahead: Ahead | None = None,
) -> Moved:
    """Apply `event` to every order of `orders` that is still in `source` and still holds the
    payment the caller read (`order.payment_id`: a decision made for one payment, say a
    capture or a decline, never applies to an order an operator has since retried with
    another); returns the orders moved, their instances updated. Orders no longer so are
    left as they are and their instances untouched: the caller reads them again to decide.

    In one transaction (the caller's, if one is open): the guarded UPDATE, the transition's
    stock change over all moved orders at once, the payments of failed or cancelled orders
    marked abandoned, one log row per order (`message` and `data`, or `message_of` and
    `data_of` by order id; `actor`: who did it, None for the system). A reservation gives
    each order all its lines or none, first come first served by id; the result's `short`
    names the missing lines of those still pending that did not get their stock. Raises
    IllegalTransition if the table has no such transition. With `ahead`, the step the orders
    go on with at once has its retry scheduled (and its attempt counted) in the same UPDATE
    (orders/scheduling.py, Ahead). Safe to run twice: a repeat finds
    the orders moved and moves none.
    """
    transition = transition_for(event, source)
    if not orders:
        return Moved()
    actor_id = actor.pk if actor is not None else None
    columns = transition_schedule(target=transition.target, event=transition.event, ahead=ahead)
    if transition.target == S.RESERVED:
        columns["reserved_at"] = NOW
    elif transition.event == E.RETRIED:
        columns["reserved_at"] = None
    elif transition.event == E.FULFILLED:
        columns["cancel_requested_at"] = None  # shipped: any cancellation ends here
    short: dict = {}
    reserving = transition.target == S.RESERVED
    with transaction.atomic(savepoint=False):
        if reserving:
            orders, short = _allocate(list(orders), source, actor_id)  # their stock is reserved
        moved_ids, now = (
            _guarded_update(transition, orders, columns=columns) if orders else (set(), None)
        )
        moved = [order for order in orders if order.pk in moved_ids]
        if reserving and len(moved) != len(orders):  # their rows are locked: cannot happen
            raise RuntimeError("orders locked for their reservation moved meanwhile")
        if not moved:
            return Moved(short=short)
        now = cast(datetime, now)  # the UPDATE moved orders, so it returned its time
        if not reserving:
            _stock_change(transition, moved, levels, actor_id)
        if transition.target in (S.FAILED, S.CANCELLED):
            payments_abandon(payment_ids=[order.payment_id for order in moved])
        log_many(
            moved,
            event,
            {
                o.pk: ((message_of or {}).get(o.pk, message), (data_of or {}).get(o.pk, data or {}))
                for o in moved
            },
            moved=(transition.source, transition.target),
            actor=actor,
        )
        if transition.target in EVENT_TYPES:
            facts = {
                "status": transition.target,
                "previous_status": transition.source,
                "failure_reason": FAILURE_REASONS.get(event, ""),
            }
            outbox_write(EVENT_TYPES[transition.target], {order.pk: facts for order in moved})
    for order in moved:
        order.status = transition.target
        order.failure_reason = FAILURE_REASONS.get(event, "")
        order.updated_at = now
        for column, value in columns.items():
            if value is INCREMENT:
                setattr(order, column, getattr(order, column) + 1)
            elif isinstance(value, Ahead):
                setattr(order, column, now + timedelta(seconds=value.retry_in[order.pk]))
            else:
                setattr(order, column, now if value is NOW else value)
    return Moved(moved, short=short)
