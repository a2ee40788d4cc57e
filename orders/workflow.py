"""The order saga (docs/DESIGN.md, "Processing workflow") as a plain service: one call
advances an order as far as it can (reserve, charge, confirm, push to the warehouse) and says
whether and when to call again. Celery runs it (orders.tasks.process_order, and
orders.tasks.fulfil_order for a push the warehouse did not answer); tests call it directly.
Resumable from any state and safe to run twice, also concurrently: every step is a guarded
transition."""

import logging
import random
from dataclasses import dataclass

from django.conf import settings

from core.checkpoints import checkpoint
from inventory.services import InsufficientStock
from inventory.warehouse import WarehouseRejected, WarehouseUnavailable, get_warehouse
from orders.dispatch import enqueue_order_fulfilment
from orders.interventions import order_cancel_after_refund
from orders.models import FailureReason, Order, OrderStatus
from orders.selectors import order_lines
from orders.services import order_confirm, order_fail, order_fulfil, order_log, order_reserve
from payments.models import PaymentStatus
from payments.services import (
    PaymentInDoubt,
    payment_charge,
    payment_lookup,
    payment_refund_if_captured,
)

logger = logging.getLogger(__name__)


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


def _retry_later(
    order: Order,
    *,
    event: str,
    attempt: int,
    base: float,
    cap: float,
    message: str,
    data: dict,
) -> Step:
    """Log that the order waits (`message` may use {delay}) and ask to be called again."""
    delay = backoff_delay(attempt, base=base, cap=cap)
    order_log(
        order=order,
        event=event,
        from_status=order.status,
        to_status=order.status,
        message=message.format(delay=delay),
        data={**data, "retry_in_seconds": round(delay, 3)},
    )
    return Step(done=False, retry_in=delay)


def order_process(*, order_id: int, attempt: int = 0) -> Step:
    """Advance the order: reserve, charge, confirm (or fail and compensate), then push it to
    the warehouse; a push the warehouse does not answer goes on in orders.fulfil_order.

    `attempt` counts the calls so far that asked to be retried (Celery's request.retries).
    No transaction is held across the payment or the warehouse call.
    """
    order = Order.objects.select_related("payment").get(pk=order_id)  # lines: order_lines
    if order.status == OrderStatus.PENDING:
        step = _reserve(order, attempt)
        if step is not None:
            return step
    if order.status == OrderStatus.RESERVED:
        step = _pay(order)
        if not step.done:
            return step
    if order.status == OrderStatus.CONFIRMED:
        step = _ship(order, attempt=0)
        if not step.done:  # the warehouse did not answer: its own task retries the push
            enqueue_order_fulfilment(order.pk, attempts_before=1, countdown=step.retry_in)
    elif order.status in (OrderStatus.FAILED, OrderStatus.CANCELLED):
        _refund_if_captured(order)
    return DONE


def _reserve(order: Order, attempt: int) -> Step | None:
    try:
        order_reserve(order=order)
    except InsufficientStock as exc:
        shortages = exc.details["shortages"]
        if attempt >= settings.ORDER_STOCK_RETRY_MAX:
            checkpoint("order.out_of_stock.decided", order_id=order.pk)
            order_fail(
                order=order,
                reason=FailureReason.OUT_OF_STOCK,
                message=f"Not enough stock after {attempt + 1} attempt(s).",
                data={"attempts": attempt + 1, "shortages": shortages},
            )
            return DONE
        return _retry_later(
            order,
            event="stock_retry",
            attempt=attempt,
            base=settings.ORDER_STOCK_RETRY_BASE_SECONDS,
            cap=settings.ORDER_STOCK_RETRY_MAX_DELAY,
            message=f"Not enough stock; retry {attempt + 1} in {{delay:.2f}}s.",
            data={"attempt": attempt + 1, "shortages": shortages},
        )
    return None


def _pay(order: Order) -> Step:
    payment = order.payment
    try:
        payment = payment_charge(payment=payment)
    except PaymentInDoubt as exc:
        if payment.attempts < settings.ORDER_PAYMENT_RETRY_MAX:
            return _retry_later(
                order,
                event="payment_retry",
                attempt=payment.attempts - 1,
                base=settings.ORDER_PAYMENT_RETRY_BASE_SECONDS,
                cap=settings.ORDER_PAYMENT_RETRY_MAX_DELAY,
                message="No answer from the payment service; retry in {delay:.2f}s.",
                data={"attempt": payment.attempts, "error": str(exc)},
            )
        # Out of retries: only the provider's record of the key may decide the outcome.
        try:
            payment = payment_lookup(payment=payment)
        except PaymentInDoubt:
            order_log(
                order=order,
                event="payment_in_doubt",
                from_status=order.status,
                to_status=order.status,
                message="Payment outcome unknown after every retry; stock stays "
                "reserved until the payment is settled.",
                data={"attempt": payment.attempts, "error": payment.last_error},
            )
            return DONE
        if payment.status == PaymentStatus.NOT_CHARGED:
            order_fail(
                order=order,
                reason=FailureReason.PAYMENT_ERROR,
                message="The payment service never answered; nothing was charged.",
                data={"attempt": payment.attempts, "error": payment.last_error},
            )
            return DONE

    if payment.status == PaymentStatus.CAPTURED:
        # If it was cancelled or expired while we were charging, the caller refunds.
        order_confirm(order=order, payment=payment)
    elif payment.status == PaymentStatus.DECLINED:
        order_fail(
            order=order,
            reason=FailureReason.PAYMENT_DECLINED,
            message=f"Payment declined: {payment.last_error or 'no reason given'}.",
            data={
                "attempt": payment.attempts,
                "payment_reference": payment.provider_reference,
                "decline_reason": payment.last_error,
            },
        )
    else:
        order_fail(
            order=order,
            reason=FailureReason.PAYMENT_ERROR,
            message="The payment service refused the charge request.",
            data={"attempt": payment.attempts, "error": payment.last_error},
        )
    return DONE


def _refund_if_captured(order: Order) -> None:
    """A failed or cancelled order must not keep a captured charge. A payment in doubt (e.g.
    cancelled while the worker's charge timed out, or a refund's answer lost) is looked up
    first: only the provider knows."""
    payment = order.payment
    try:
        refunded = payment_refund_if_captured(
            payment=payment, look_up=(PaymentStatus.IN_DOUBT, PaymentStatus.REFUND_IN_DOUBT)
        )
    except PaymentInDoubt as exc:
        logger.warning(
            "order %s: payment or its refund still in doubt: %s",
            order.pk,
            exc,
            extra={"order_id": order.pk},
        )
        return
    if not refunded:
        return
    order_log(
        order=order,
        event="refunded",
        from_status=order.status,
        to_status=order.status,
        message="Captured charge refunded.",
        data={"payment_reference": payment.provider_reference},
    )


def order_ship(*, order_id: int, attempt: int = 0) -> Step:
    """Push a confirmed order to the warehouse (idempotent there by order uid) and record the
    shipment. Retried with backoff while the warehouse gives no answer; a refusal (unknown SKU,
    not enough stock there) is logged and left for an operator. Safe to run twice."""
    order = Order.objects.select_related("payment").get(pk=order_id)
    if order.status != OrderStatus.CONFIRMED:
        return DONE
    return _ship(order, attempt=attempt)


def _ship(order: Order, *, attempt: int) -> Step:
    if order.payment.status != PaymentStatus.CAPTURED and not _still_captured(order):
        return DONE
    lines = [(line.product.sku, line.quantity) for line in order_lines(order)]
    try:
        checkpoint("order.ship.sending", order_id=order.pk)
        shipment = get_warehouse().ship(order_id=str(order.uid), lines=lines)
        checkpoint("order.ship.answered", order_id=order.pk)
    except WarehouseUnavailable as exc:
        if attempt >= settings.ORDER_SHIP_RETRY_MAX:
            order_log(
                order=order,
                event="shipment_unanswered",
                from_status=order.status,
                to_status=order.status,
                message="The warehouse did not answer after every retry.",
                data={"attempt": attempt + 1, "error": str(exc)},
            )
            return DONE
        return _retry_later(
            order,
            event="shipment_retry",
            attempt=attempt,
            base=settings.ORDER_SHIP_RETRY_BASE_SECONDS,
            cap=settings.ORDER_SHIP_RETRY_MAX_DELAY,
            message="No answer from the warehouse; retry in {delay:.2f}s.",
            data={"attempt": attempt + 1, "error": str(exc)},
        )
    except WarehouseRejected as exc:
        order_log(
            order=order,
            event="shipment_refused",
            from_status=order.status,
            to_status=order.status,
            message=f"The warehouse refused the shipment: {exc}",
            data={"code": exc.code, "details": exc.details},
        )
        return DONE
    order_fulfil(order=order, shipment=shipment)
    return DONE


def _still_captured(order: Order) -> bool:
    """A confirmed order's payment that is not plainly captured: a cancellation's refund got
    no answer, so the provider may have refunded it. Ask the provider: still captured -> ship;
    refunded -> finish that cancellation instead; no answer (or anything else) -> hold the
    shipment, logged; the reconciler pushes it again later."""
    try:
        payment = payment_lookup(payment=order.payment)
    except PaymentInDoubt as exc:
        status, error = "unknown", str(exc)
    else:
        if payment.status == PaymentStatus.CAPTURED:
            return True
        if payment.status == PaymentStatus.REFUNDED:
            order_cancel_after_refund(order=order)
            return False
        status, error = payment.status, ""
    order_log(
        order=order,
        event="shipment_held",
        from_status=order.status,
        to_status=order.status,
        message=f"Not pushed to the warehouse: its payment is {status.replace('_', ' ')}, "
        "so the order may no longer be paid.",
        data={"payment_status": status, "error": error},
    )
    return False
