"""What happens to an order while its status stays: one small function per event of
OrderEvent that is not a transition (those are orders/transitions.py's). Each writes the
order's log row (history, for people) and, where the workflow or the reconciler decide from
it, keeps the order's columns in the same statement's transaction: a stock retry counts in
`stock_attempts`, a shipment retry in `ship_attempts`, a scheduled retry is progress
(`progressed_at`). Nothing ever reads the log to decide.

`actor` is who did it (a user), None when the system did.
"""

import logging
from typing import Any

from django.db import transaction
from django.db.models import F
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


@transaction.atomic
def _count(order: Order, status: str, **columns) -> bool:
    """Bump the order's counters (and progress) if it is still in `status`."""
    now = timezone.now()
    updated = Order.objects.filter(pk=order.pk, status=status).update(
        progressed_at=now, **{name: F(name) + 1 for name in columns}
    )
    if updated:
        order.progressed_at = now
        for name in columns:
            setattr(order, name, getattr(order, name) + 1)
    return bool(updated)


# --- the workflow ---------------------------------------------------------------------------


@transaction.atomic
def stock_retry_event(*, order: Order, shortages: list[dict], retry_in: float) -> None:
    """Not enough stock: the order waits and tries again (counted in stock_attempts)."""
    if _count(order, S.PENDING, stock_attempts=True):
        _log(
            order,
            E.STOCK_RETRY,
            f"Not enough stock; retry {order.stock_attempts} in {retry_in:.2f}s.",
            {"attempt": order.stock_attempts, "shortages": shortages, "retry_in_seconds": retry_in},
        )


@transaction.atomic
def payment_retry_event(*, order: Order, payment: Payment, retry_in: float) -> None:
    """No definitive answer from the payment service: the order tries again later."""
    now = timezone.now()
    if Order.objects.filter(pk=order.pk, status=S.RESERVED).update(progressed_at=now):
        order.progressed_at = now
        _log(
            order,
            E.PAYMENT_RETRY,
            f"No answer from the payment service; retry in {retry_in:.2f}s.",
            {"try": payment.tries, "error": payment.last_error, "retry_in_seconds": retry_in},
        )


def payment_in_doubt_event(*, order: Order, payment: Payment) -> None:
    """Out of retries without knowing: the reconciler looks the charge up from here on."""
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
def shipment_retry_event(*, order: Order, error: str, retry_in: float) -> None:
    """The warehouse gave no answer: the push is tried again (counted in ship_attempts)."""
    if _count(order, S.CONFIRMED, ship_attempts=True):
        _log(
            order,
            E.SHIPMENT_RETRY,
            f"No answer from the warehouse; retry in {retry_in:.2f}s.",
            {"attempt": order.ship_attempts, "error": error, "retry_in_seconds": retry_in},
        )


def shipment_unanswered_event(*, order: Order, error: str) -> None:
    _log(
        order,
        E.SHIPMENT_UNANSWERED,
        f"The warehouse did not answer after {order.ship_attempts + 1} pushes; the reconciler "
        "pushes it again later.",
        {"attempt": order.ship_attempts + 1, "error": error},
    )


def shipment_refused_event(*, order: Order, code: str, message: str, details: dict) -> None:
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
