"""The order saga (docs/DESIGN.md, "Processing workflow") as a plain service: one call
advances an order as far as it can (reserve, charge, confirm, push to the warehouse) and says
whether and when to call again. Celery runs it (orders.tasks.process_order, and
orders.tasks.fulfil_order for a push the warehouse did not answer); tests call it directly.

Resumable from any state and safe to run twice, also concurrently: every step is a
transition guarded by the state it was decided for (orders/transitions.py), and the retry
budgets are counted on the order and its payment, not by the caller.
"""

import logging
import random
from dataclasses import dataclass

from django.conf import settings

from core.checkpoints import checkpoint
from inventory.fulfilment import (
    WarehouseRejected,
    WarehouseUnavailable,
    shipment_push,
)
from inventory.services import InsufficientStock
from orders import events
from orders.dispatch import enqueue_order_fulfilment
from orders.models import Order, OrderEvent, OrderStatus
from orders.selectors import order_lines
from orders.services import order_confirm, order_fail, order_fulfil, order_reserve
from payments.models import Payment, PaymentStatus
from payments.services import PaymentInDoubt, PaymentRefused, payment_charge, payment_settle

logger = logging.getLogger(__name__)

S = OrderStatus
E = OrderEvent
P = PaymentStatus


@dataclass(frozen=True)
class Step:
    """What the caller should do next: nothing (done), or call again in `retry_in` seconds."""

    done: bool
    retry_in: float | None = None


DONE = Step(done=True)


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with proportional jitter: base * 2**attempt, capped, times a
    random factor in [1, 1 + ORDER_RETRY_JITTER)."""
    return min(cap, base * 2**attempt) * (1 + random.random() * settings.ORDER_RETRY_JITTER)


def _load(order_id: int) -> Order:
    return Order.objects.select_related("payment").get(pk=order_id)  # lines: order_lines


def order_process(*, order_id: int) -> Step:
    """Advance the order: reserve, charge, confirm (or fail and compensate), then push it to
    the warehouse; a push the warehouse does not answer goes on in orders.fulfil_order.
    No transaction is held across the payment or the warehouse call.
    """
    order = _load(order_id)
    # Each round takes one step from the order's status; a step that finds the order moved
    # by another actor reads it again, and the next round judges it from where it is.
    for _ in range(6):
        if order.status == S.PENDING:
            step = _reserve(order)
        elif order.status == S.RESERVED:
            step = _pay(order)
        elif order.status == S.CONFIRMED:
            step = _ship(order)
            if not step.done:  # the warehouse did not answer: its own task retries the push
                enqueue_order_fulfilment(order.pk, countdown=step.retry_in)
            return DONE
        else:
            if order.status in (S.FAILED, S.CANCELLED):
                _settle_payments(order)
            return DONE
        if step is not None:
            return step
    return DONE


def _reserve(order: Order) -> Step | None:
    """None: go on with the order (reserved now, or read again after it moved)."""
    try:
        return None if order_reserve(order=order) else _again(order)
    except InsufficientStock as exc:
        shortages = exc.details["shortages"]
    if order.stock_attempts >= settings.ORDER_STOCK_RETRY_MAX:
        checkpoint("order.out_of_stock.decided", order_id=order.pk)
        if order_fail(
            order=order,
            event=E.OUT_OF_STOCK,
            source=S.PENDING,
            message=f"Not enough stock after {order.stock_attempts + 1} attempt(s).",
            data={"attempts": order.stock_attempts + 1, "shortages": shortages},
        ):
            return DONE
        return _again(order)
    delay = backoff_delay(
        order.stock_attempts,
        base=settings.ORDER_STOCK_RETRY_BASE_SECONDS,
        cap=settings.ORDER_STOCK_RETRY_MAX_DELAY,
    )
    events.stock_retry_event(order=order, shortages=shortages, retry_in=round(delay, 3))
    return Step(done=False, retry_in=delay)


def _pay(order: Order) -> Step | None:
    """None: go on with the order (confirmed now, or read again after it moved)."""
    try:
        payment = payment_charge(payment=order.payment)
    except PaymentRefused as exc:
        moved = order_fail(
            order=order,
            event=E.PAYMENT_ERROR,
            source=S.RESERVED,
            message="The payment service refused the charge request.",
            data={"attempt": order.payment.attempts, "error": exc.message[:500]},
        )
        return DONE if moved else _again(order)
    if payment.status == P.CAPTURED:
        if order_confirm(order=order, payment=payment):
            return None  # confirmed: on to the warehouse
        order.refresh_from_db()
        if order.payment_id == payment.pk and order.status not in (S.FAILED, S.CANCELLED):
            return None  # another worker confirmed it with this very capture: go on
        # Cancelled, failed, expired or retried with a new payment while we charged: the
        # order does not want this capture.
        _settle(order, payment)
        return None if order.status in (S.PENDING, S.RESERVED) else DONE
    if payment.status == P.DECLINED:
        moved = order_fail(
            order=order,
            event=E.PAYMENT_DECLINED,
            source=S.RESERVED,
            message=f"Payment declined: {payment.last_error or 'no reason given'}.",
            data={
                "attempt": payment.attempts,
                "payment_reference": payment.provider_reference,
                "decline_reason": payment.last_error,
            },
        )
        return DONE if moved else _again(order)
    if payment.status in (P.REFUNDED, P.REFUND_IN_DOUBT):
        return _again(order)  # settled for an order that no longer wants it: judge it again
    # No definitive answer (in doubt, or "no charge yet" while another worker's request may be
    # on its way): try again later.
    if payment.tries < settings.ORDER_PAYMENT_RETRY_MAX:
        delay = backoff_delay(
            max(payment.tries - 1, 0),
            base=settings.ORDER_PAYMENT_RETRY_BASE_SECONDS,
            cap=settings.ORDER_PAYMENT_RETRY_MAX_DELAY,
        )
        events.payment_retry_event(order=order, payment=payment, retry_in=round(delay, 3))
        return Step(done=False, retry_in=delay)
    # Out of tries: the reconciler asks the provider from here on, spaced by its passes, and
    # releases the reservation when it expires (a capture found later is refunded).
    events.payment_in_doubt_event(order=order, payment=payment)
    return DONE


def _again(order: Order) -> None:
    """The order moved meanwhile: read it again, for the next round to judge."""
    order.refresh_from_db()


def _settle(order: Order, payment: Payment) -> None:
    """A charge the order does not want (failed, cancelled, or replaced): refunded if the
    provider holds a capture. Unanswered: the reconciler settles it later."""
    try:
        refunded = payment_settle(payment=payment)
    except (PaymentInDoubt, PaymentRefused) as exc:
        logger.warning(
            "order %s: payment %s not settled yet: %s",
            order.pk,
            payment.pk,
            exc,
            extra={"order_id": order.pk},
        )
        return
    if refunded:
        events.refunded_event(order=order, payment=payment)


def _settle_payments(order: Order) -> None:
    """A failed or cancelled order must not keep a captured charge."""
    if order.payment.attempts:
        _settle(order, order.payment)


def order_ship(*, order_id: int) -> Step:
    """Push a confirmed order to the warehouse (idempotent there by order uid) and record the
    shipment. Retried with backoff while the warehouse gives no answer; a refusal (unknown SKU,
    not enough stock there) is logged and left for an operator. Safe to run twice."""
    order = _load(order_id)
    if order.status != S.CONFIRMED:
        return DONE
    return _ship(order)


def _ship(order: Order) -> Step:
    if order.cancel_requested_at is not None:
        return DONE  # being cancelled: never pushed from now on
    if order.payment.status != P.CAPTURED:
        logger.error(
            "order %s is confirmed but its payment is %s: not pushed",
            order.pk,
            order.payment.status,
            extra={"order_id": order.pk},
        )
        return DONE
    lines = [(line.product.sku, line.quantity) for line in order_lines(order)]
    try:
        checkpoint("order.ship.sending", order_id=order.pk)
        shipment = shipment_push(order_ref=str(order.uid), lines=lines)
        checkpoint("order.ship.answered", order_id=order.pk)
    except WarehouseUnavailable as exc:
        if order.ship_attempts >= settings.ORDER_SHIP_RETRY_MAX:
            events.shipment_unanswered_event(order=order, error=str(exc))
            return DONE
        delay = backoff_delay(
            order.ship_attempts,
            base=settings.ORDER_SHIP_RETRY_BASE_SECONDS,
            cap=settings.ORDER_SHIP_RETRY_MAX_DELAY,
        )
        events.shipment_retry_event(order=order, error=str(exc), retry_in=round(delay, 3))
        return Step(done=False, retry_in=delay)
    except WarehouseRejected as exc:
        # order_cancelled: a cancellation asked the warehouse first; it finishes by itself.
        events.shipment_refused_event(
            order=order, code=exc.code, message=str(exc), details=exc.details
        )
        return DONE
    order_fulfil(order=order, shipment=shipment)
    return DONE
