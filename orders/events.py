"""What happens to an order while its status stays: one small function per event of
OrderEvent that is not a transition (those are orders/transitions.py's). Each writes the
order's log row (history, for people) and, where the workflow or the reconciler decide from
it, keeps the order's columns in the same statement's transaction: a stock retry counts in
`stock_attempts`, a shipment retry in `ship_attempts`, a scheduled retry is progress
(`progressed_at`). Nothing ever reads the log to decide.

`actor` is who did it (a user), None when the system did.
"""

import logging
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from orders.models import Order, OrderEvent, OrderLog, OrderStatus
from payments.models import Payment

logger = logging.getLogger(__name__)

E = OrderEvent
S = OrderStatus


def report_after_commit(order_id: int, event: str, line: str) -> None:
    """One log line about the order, written once the transaction commits: only what
    committed is reported (a transition rolled back never happened)."""
    transaction.on_commit(
        lambda: logger.info(
            "order %s %s: %s", order_id, event, line, extra={"order_id": order_id, "event": event}
        )
    )


def _log(
    order: Order,
    event: OrderEvent,
    message: str,
    data: dict[str, Any] | None = None,
    *,
    actor=None,
) -> OrderLog:
    entry = OrderLog.objects.create(
        order=order,
        event=event,
        from_status=order.status,
        to_status=order.status,
        message=message,
        data=data or {},
        actor=actor,
    )
    report_after_commit(order.pk, str(event), message)
    return entry


_COUNT_SQL = """
UPDATE orders_order SET progressed_at = %s, ready_at = CASE id {ready} END{counters}
WHERE id IN ({ids}) AND status = %s
RETURNING id{returned}
"""


def _count(
    orders: list[Order], status: str, retry_in: dict[int, float], counter: str | None = None
) -> list[Order]:
    """One statement, for those of `orders` still in `status`: progress, the time a worker
    may take each up again (`retry_in` seconds from now), and one more to their `counter`;
    returns them, their instances updated."""
    now = timezone.now()
    when = connection.ops.adapt_datetimefield_value
    ready = {o.pk: now + timedelta(seconds=retry_in[o.pk]) for o in orders}
    sql = _COUNT_SQL.format(
        ready=" ".join(["WHEN %s THEN %s"] * len(orders)),
        counters=f", {counter} = {counter} + 1" if counter else "",
        ids=", ".join(["%s"] * len(orders)),
        returned=f", {counter}" if counter else "",
    )
    params = [when(now), *(v for o in orders for v in (o.pk, when(ready[o.pk])))]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *(o.pk for o in orders), status])
        counted = {row[0]: row[1:] for row in cursor.fetchall()}
    for order in orders:
        if order.pk in counted:
            order.progressed_at, order.ready_at = now, ready[order.pk]
            if counter:
                setattr(order, counter, counted[order.pk][0])
    return [order for order in orders if order.pk in counted]


def _not_ready(order: Order) -> None:
    """No worker step left for now: the reconciler (or an operator) takes it from here."""
    Order.objects.filter(pk=order.pk).update(ready_at=None)
    order.ready_at = None


def _log_many(orders: list[Order], event: OrderEvent, entries: dict[int, tuple]) -> None:
    """One insert: a log row per order, (message, data) from `entries`."""
    OrderLog.objects.bulk_create(
        [
            OrderLog(
                order=order,
                event=event,
                from_status=order.status,
                to_status=order.status,
                message=entries[order.pk][0],
                data=entries[order.pk][1],
            )
            for order in orders
        ]
    )
    for order in orders:
        report_after_commit(order.pk, str(event), entries[order.pk][0])


# --- the workflow ---------------------------------------------------------------------------


@transaction.atomic
def stock_retry_events(*, orders: list[Order], shortages: dict, retry_in: dict) -> list[Order]:
    """Not enough stock: each order waits and tries again (counted in stock_attempts). Set-based;
    returns those still pending, the ones logged."""
    counted = _count(orders, S.PENDING, retry_in, "stock_attempts")
    _log_many(
        counted,
        E.STOCK_RETRY,
        {
            o.pk: (
                f"Not enough stock; retry {o.stock_attempts} in {retry_in[o.pk]:.2f}s.",
                {
                    "attempt": o.stock_attempts,
                    "shortages": shortages[o.pk],
                    "retry_in_seconds": retry_in[o.pk],
                },
            )
            for o in counted
        },
    )
    return counted


@transaction.atomic
def payment_retry_events(*, orders: list[Order], retry_in: dict) -> list[Order]:
    """No definitive answer from the payment service: each order tries again later."""
    counted = _count(orders, S.RESERVED, retry_in)
    _log_many(
        counted,
        E.PAYMENT_RETRY,
        {
            o.pk: (
                f"No answer from the payment service; retry in {retry_in[o.pk]:.2f}s.",
                {
                    "try": o.payment.tries,
                    "error": o.payment.last_error,
                    "retry_in_seconds": retry_in[o.pk],
                },
            )
            for o in counted
        },
    )
    return counted


@transaction.atomic
def payment_in_doubt_event(*, order: Order, payment: Payment) -> None:
    """Out of retries without knowing: the reconciler looks the charge up from here on."""
    _not_ready(order)
    _log(
        order,
        E.PAYMENT_IN_DOUBT,
        f"Payment outcome unknown after {payment.tries} tries; the reconciler asks the payment "
        "service from here on (until the reservation expires).",
        {"tries": payment.tries, "error": payment.last_error},
    )


def payment_looked_up_event(*, order: Order, payment: Payment) -> None:
    _log(
        order,
        E.PAYMENT_LOOKED_UP,
        f"The payment service says: {payment.get_status_display()}.",
        {"payment_status": payment.status, "payment_reference": payment.provider_reference},
    )


def refunded_event(*, order: Order, payment: Payment, actor=None) -> None:
    current = payment.pk == order.payment_id
    _log(
        order,
        E.REFUNDED,
        "Captured charge refunded."
        if current
        else f"A capture on payment {payment.pk}, replaced by a retry, was refunded.",
        {"payment_id": payment.pk, "payment_reference": payment.provider_reference},
        actor=actor,
    )


@transaction.atomic
def shipment_retry_events(*, orders: list[Order], error: str, retry_in: dict) -> list[Order]:
    """The warehouse gave no answer: each push is tried again (counted in ship_attempts)."""
    counted = _count(orders, S.CONFIRMED, retry_in, "ship_attempts")
    _log_many(
        counted,
        E.SHIPMENT_RETRY,
        {
            o.pk: (
                f"No answer from the warehouse; retry in {retry_in[o.pk]:.2f}s.",
                {"attempt": o.ship_attempts, "error": error, "retry_in_seconds": retry_in[o.pk]},
            )
            for o in counted
        },
    )
    return counted


@transaction.atomic
def shipment_unanswered_event(*, order: Order, error: str) -> None:
    _not_ready(order)
    _log(
        order,
        E.SHIPMENT_UNANSWERED,
        f"The warehouse did not answer after {order.ship_attempts + 1} pushes; the reconciler "
        "pushes it again later.",
        {"attempt": order.ship_attempts + 1, "error": error},
    )


def shipment_withheld_event(*, order: Order) -> None:
    """A confirmed order whose payment is not captured is never pushed to the warehouse: no
    worker takes it up again, and an operator is told (the error log line)."""
    _not_ready(order)
    logger.error(
        "order %s is confirmed but its payment is %s: not pushed",
        order.pk,
        order.payment.status,
        extra={"order_id": order.pk},
    )


@transaction.atomic
def shipment_refused_event(*, order: Order, code: str, message: str, details: dict) -> None:
    _not_ready(order)
    _log(
        order,
        E.SHIPMENT_REFUSED,
        f"The warehouse refused the shipment: {message}",
        {"code": code, "details": details},
    )


def shipped_after_cancel_event(*, order: Order, shipment_id: str) -> None:
    _log(
        order,
        E.SHIPPED_AFTER_CANCEL,
        "The warehouse shipped this order after it was cancelled: an operator must settle it.",
        {"shipment_id": shipment_id},
    )


# --- cancellation of a confirmed order ----------------------------------------------------------


@transaction.atomic
def cancel_requested_event(*, order: Order, actor, via: str) -> bool:
    """A confirmed order is to be cancelled: from now on it is not pushed to the warehouse.
    False (nothing changed) when it is no longer confirmed or already being cancelled."""
    now = timezone.now()
    requested = Order.objects.filter(
        pk=order.pk, status=S.CONFIRMED, cancel_requested_at__isnull=True
    ).update(cancel_requested_at=now, cancel_requested_by=actor, cancel_requested_via=via)
    if not requested:
        return False
    order.cancel_requested_at, order.cancel_requested_by, order.cancel_requested_via = (
        now,
        actor,
        via,
    )
    by = actor.get_username() if actor else "the system"
    _log(
        order,
        E.CANCEL_REQUESTED,
        f"Cancellation requested by {by} ({via}): the order is not pushed to the warehouse any "
        "more.",
        {"via": via},
        actor=actor,
    )
    return True


def cancel_stalled_event(*, order: Order, event: OrderEvent, error: str, actor=None) -> None:
    """The cancellation could not finish now (the warehouse or the payment service did not
    answer, or the refund was refused); it goes on later."""
    reason = {
        E.CANCEL_SHIPMENT_UNANSWERED: "the warehouse did not answer",
        E.CANCEL_SHIPMENT_REFUSED: "the warehouse refused to cancel the shipment; an operator "
        "must look at it",
        E.CANCEL_REFUND_UNANSWERED: "the refund got no answer",
        E.CANCEL_REFUND_REFUSED: "the refund was refused; an operator must look at it",
    }[event]
    _log(
        order,
        event,
        f"Cancellation not finished: {reason}. The order does not ship; the reconciler "
        "goes on with the cancellation.",
        {"error": error[:500]},
        actor=actor,
    )


def cancel_refused_shipped_event(*, order: Order, actor=None) -> None:
    _log(
        order,
        E.CANCEL_REFUSED_SHIPPED,
        "Not cancelled: the warehouse had already shipped it.",
        actor=actor,
    )


# --- operators and the reconciler -----------------------------------------------------------------


def requeued_event(*, order: Order, idle_seconds: int) -> None:
    _log(
        order,
        E.REQUEUED,
        f"No progress for {idle_seconds}s; processing published again.",
        {"idle_seconds": idle_seconds},
    )


def fulfilment_repushed_event(*, order: Order, actor=None) -> None:
    _log(
        order,
        E.FULFILMENT_REPUSHED,
        f"Pushed to the warehouse again by {actor.get_username()}."
        if actor
        else "The warehouse has not acknowledged it; pushed again.",
        actor=actor,
    )


def reconcile_failed_event(*, order: Order, error: str) -> None:
    _log(
        order,
        E.RECONCILE_FAILED,
        f"The reconciler could not handle it this time ({error[:200]}); it tries again on a "
        "later pass.",
        {"error": error[:2000]},
    )
