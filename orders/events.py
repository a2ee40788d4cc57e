"""What happens to an order while its status stays: one small function per event of
OrderEvent that is not a transition (those are orders/transitions.py's). Each writes the
order's log rows, history for people, in the caller's transaction (set-based where the
engine logs a batch). They write nothing else: what the workflow and the reconciler decide
from are the order's columns, kept by orders/scheduling.py. Nothing ever reads the log to
decide.

`actor` is who did it (a user), None when the system did.
"""

import logging
from collections.abc import Mapping
from typing import Any

from django.db import transaction

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


def log_many(
    orders: list[Order],
    event: OrderEvent,
    entries: dict[int, tuple[str, dict[str, Any]]],
    *,
    moved: tuple[str, str] | None = None,
    actor=None,
) -> None:
    """One insert: a log row per order, (message, data) from `entries`; `moved`: the
    (from, to) of a transition (orders/transitions.py), else the order stays in its status.
    Each is reported once the transaction commits."""
    OrderLog.objects.bulk_create(
        [
            OrderLog(
                order=order,
                event=event,
                from_status=moved[0] if moved else order.status,
                to_status=moved[1] if moved else order.status,
                message=entries[order.pk][0],
                data=entries[order.pk][1],
                actor=actor,
            )
            for order in orders
        ]
    )
    for order in orders:
        line = entries[order.pk][0]
        report_after_commit(
            order.pk, str(event), f"{moved[0]} -> {moved[1]} {line}" if moved else line
        )


# --- the workflow ---------------------------------------------------------------------------


def stock_retry_events(*, orders: list[Order], shortages: dict, retry_in: dict) -> None:
    """Not enough stock: each order waits and tries again (counted in stock_attempts)."""
    log_many(
        orders,
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
            for o in orders
        },
    )


def payment_retry_events(
    *, orders: list[Order], errors: dict, retry_in: Mapping[int, float]
) -> None:
    """No definitive answer about the charge: each order tries again later."""
    log_many(
        orders,
        E.PAYMENT_RETRY,
        {
            o.pk: (
                f"No definitive answer from the payment service ({errors[o.pk][:200]}); "
                f"retry in {retry_in[o.pk]:.2f}s.",
                {
                    "try": o.payment.tries,
                    "error": errors[o.pk],
                    "retry_in_seconds": retry_in[o.pk],
                },
            )
            for o in orders
        },
    )


def payment_in_doubt_events(*, orders: list[Order]) -> None:
    """Out of tries without knowing: the reconciler looks the charge up from here on."""
    log_many(
        orders,
        E.PAYMENT_IN_DOUBT,
        {
            o.pk: (
                f"Payment outcome unknown after {o.payment.tries} tries; the reconciler asks "
                "the payment service from here on (until the reservation expires).",
                {"tries": o.payment.tries, "error": o.payment.last_error},
            )
            for o in orders
        },
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


def shipment_retry_events(
    *, orders: list[Order], error: str, retry_in: Mapping[int, float]
) -> None:
    """The warehouse gave no answer: each push is tried again (counted in ship_attempts)."""
    log_many(
        orders,
        E.SHIPMENT_RETRY,
        {
            o.pk: (
                f"No answer from the warehouse; retry in {retry_in[o.pk]:.2f}s.",
                {"attempt": o.ship_attempts, "error": error, "retry_in_seconds": retry_in[o.pk]},
            )
            for o in orders
        },
    )


def shipment_unanswered_events(*, orders: list[Order], error: str) -> None:
    log_many(
        orders,
        E.SHIPMENT_UNANSWERED,
        {
            o.pk: (
                f"The warehouse did not answer after {o.ship_attempts} pushes; the reconciler "
                "pushes it again later.",
                {"attempt": o.ship_attempts, "error": error},
            )
            for o in orders
        },
    )


def shipment_withheld_event(*, order: Order) -> None:
    """A confirmed order whose payment is not captured is never pushed to the warehouse: an
    operator is told (the error log line)."""
    logger.error(
        "order %s is confirmed but its payment is %s: not pushed",
        order.pk,
        order.payment.status,
        extra={"order_id": order.pk},
    )


def shipment_refused_event(*, order: Order, code: str, message: str, details: dict) -> None:
    _log(
        order,
        E.SHIPMENT_REFUSED,
        f"The warehouse refused the shipment: {message}",
        {"code": code, "details": details},
    )


def step_failed_event(*, order: Order, error: str, retry_in: float | None) -> None:
    """One of its steps raised an unexpected error (a bug, an answer nobody could read): the
    others of its batch went on; it is tried again after its backoff, or, out of tries, left
    to the reconciler (every ORDER_STUCK_AFTER_SECONDS) and operators."""
    then = (
        f"retry {order.step_errors} in {retry_in:.2f}s"
        if retry_in is not None
        else "no more retries; the reconciler takes it up again later"
    )
    _log(
        order,
        E.STEP_FAILED,
        f"Processing failed ({error[:300]}); {then}.",
        {"error": error[:2000], "errors": order.step_errors, "retry_in_seconds": retry_in},
    )


def shipped_after_cancel_event(*, order: Order, shipment_id: str) -> None:
    _log(
        order,
        E.SHIPPED_AFTER_CANCEL,
        "The warehouse shipped this order after it was cancelled: an operator must settle it.",
        {"shipment_id": shipment_id},
    )


# --- cancellation of a confirmed order ----------------------------------------------------------


def cancel_requested_event(*, order: Order, actor, via: str) -> None:
    by = actor.get_username() if actor else "the system"
    _log(
        order,
        E.CANCEL_REQUESTED,
        f"Cancellation requested by {by} ({via}): the order is not pushed to the warehouse any "
        "more.",
        {"via": via},
        actor=actor,
    )


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
