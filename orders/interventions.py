"""People stepping into the workflow: a customer or an operator cancelling an order, an
operator retrying a failed order or pushing a confirmed one to the warehouse again.

Each goes through the same guarded transitions as the workflow (orders/services.py) and
takes the order's row lock before judging its status, so it composes with a worker
processing the same order at the same moment.
"""

from django.db import transaction

from core.errors import Conflict, DomainError
from inventory.services import stock_release, stock_release_committed
from orders.dispatch import enqueue_order_fulfilment, enqueue_order_processing
from orders.models import Order, OrderStatus
from orders.services import _quantities, _transition, _transition_service, order_log
from payments.gateway import PaymentGatewayRejected
from payments.models import Payment, PaymentStatus
from payments.services import PaymentInDoubt, payment_create, payment_lookup, payment_refund

S = OrderStatus


# --- Cancellation (by the customer over the API, or by an operator in the admin) -----------


class OrderNotCancellable(Conflict):
    code = "order_not_cancellable"

    def __init__(self, order: Order, reason: str):
        super().__init__(
            f"Order {order.pk} is {order.status} and can no longer be cancelled: {reason}",
            details={"order_id": order.pk, "status": order.status},
        )


class RefundUnavailable(DomainError):
    code = "payment_service_unavailable"
    status_code = 503
    default_message = (
        "The payment service did not answer the refund; the order was not cancelled. "
        "Try again in a moment."
    )


class RefundRefused(DomainError):
    code = "refund_refused"
    status_code = 502
    default_message = "The payment service refused the refund; the order was not cancelled."


NOT_CANCELLABLE = {
    S.FULFILLED: "the warehouse has already shipped it.",
    S.FAILED: "it has already failed and holds neither stock nor a charge.",
}


def order_cancel(*, order: Order, by: str, via: str) -> Order:
    """Cancel an order; returns it cancelled. `by` (a username) and `via` ("api", "admin")
    are logged.

    pending or reserved: -> cancelled, reserved units released, in one transaction. A reserved
    order may have a charge on its way: processing is enqueued again after the commit, and the
    workflow refunds a capture that arrives for a cancelled order.
    confirmed: the captured payment is refunded first, OUTSIDE any transaction (no answer:
    RefundUnavailable, 503; a refusal: RefundRefused, 502; the order unchanged either way),
    then confirmed -> cancelled with the committed units released in one transaction.
    fulfilled or failed: OrderNotCancellable (409).

    The status is judged again under the order's row lock before moving it, so an order that
    moved on meanwhile (e.g. confirmed by the worker) is handled from where it is. Already
    cancelled: returned unchanged. Safe to run twice and concurrently (the transition is
    guarded; the refund is idempotent at the provider).
    """
    refunded = False
    while True:
        order = Order.objects.select_related("payment").get(pk=order.pk)
        if order.status == S.CANCELLED:
            return order
        if order.status in NOT_CANCELLABLE:
            if refunded:
                _log_refund_without_cancel(order=order, by=by, via=via)
            raise OrderNotCancellable(order, NOT_CANCELLABLE[order.status])
        if order.status == S.CONFIRMED and not refunded:
            _refund_for_cancel(order=order, by=by, via=via)
            refunded = True
        if _cancel_locked(order=order, refunded=refunded, by=by, via=via):
            return order


def _refund_for_cancel(*, order: Order, by: str, via: str) -> None:
    try:
        payment_refund(payment=order.payment)
    except (PaymentInDoubt, PaymentGatewayRejected) as exc:
        unanswered = isinstance(exc, PaymentInDoubt)
        with transaction.atomic():
            order_log(
                order=order,
                event="cancel_refund_unanswered" if unanswered else "cancel_refund_refused",
                from_status=order.status,
                to_status=order.status,
                message=f"Cancellation by {by} ({via}) stopped: the refund "
                + ("got no answer" if unanswered else "was refused")
                + "; the order is unchanged.",
                data={"by": by, "via": via, "error": str(exc)[:500]},
            )
        raise (RefundUnavailable() if unanswered else RefundRefused()) from exc


def order_cancel_after_refund(*, order: Order) -> bool:
    """Finish a cancellation whose refund got no answer at the time (503 to the canceller)
    but which the payment service has since said it made: confirmed -> cancelled, committed
    units released, logged in the name of that canceller. False if the order is no longer
    confirmed. Call once the payment is known REFUNDED."""
    attempt = order.logs.filter(event="cancel_refund_unanswered").order_by("-id").first()
    data = attempt.data if attempt else {}
    return _cancel_locked(
        order=order,
        refunded=True,
        by=data.get("by", "a canceller not on record"),
        via=data.get("via", "refund found before shipping"),
    )


def _log_refund_without_cancel(*, order: Order, by: str, via: str) -> None:
    """The warehouse shipped the order while its payment was being refunded for a cancel."""
    with transaction.atomic():
        order_log(
            order=order,
            event="refunded_not_cancelled",
            from_status=order.status,
            to_status=order.status,
            message=f"Refunded for a cancellation by {by} ({via}), but the order was "
            f"{order.status} meanwhile, so it stays {order.status}: an operator must settle it.",
            data={"by": by, "via": via, "payment_reference": order.payment.provider_reference},
        )


@_transition_service
def _cancel_locked(*, order: Order, refunded: bool, by: str, via: str) -> bool:
    """The cancel transition under the order's row lock (then the stock rows): False, changing
    nothing, when the order is no longer in a state this call may cancel from."""
    order.status = (
        Order.objects.select_for_update().values_list("status", flat=True).get(pk=order.pk)
    )
    if order.status not in (S.PENDING, S.RESERVED, S.CONFIRMED) or (
        order.status == S.CONFIRMED and not refunded
    ):
        return False
    payment = order.payment
    moved_from = _transition(
        order,
        to=S.CANCELLED,
        event="cancelled",
        message=f"Cancelled by {by} ({via})" + ("; payment refunded." if refunded else "."),
        data={
            "by": by,
            "via": via,
            "refunded": refunded,
            **({"payment_reference": payment.provider_reference} if refunded else {}),
        },
    )
    if moved_from == S.RESERVED:
        stock_release(quantities=_quantities(order))
        transaction.on_commit(lambda: enqueue_order_processing(order.pk))
    elif moved_from == S.CONFIRMED:
        stock_release_committed(quantities=_quantities(order))
    return True


# --- Operator actions (admin): retry a failed order, push a confirmed one again ------------


class OrderNotRetryable(Conflict):
    code = "order_not_retryable"

    def __init__(self, order: Order, reason: str):
        super().__init__(
            f"Order {order.pk} cannot be retried: {reason}",
            details={"order_id": order.pk, "status": order.status},
        )


def _previous_payment_settled(*, order: Order) -> Payment:
    """The failed order's payment, known not captured (else OrderNotRetryable). A payment
    whose outcome we did not hear for certain is looked up by its key first, over HTTP."""
    payment = order.payment
    unsure = payment.status in (PaymentStatus.IN_DOUBT, PaymentStatus.REFUND_IN_DOUBT) or (
        payment.attempts and payment.status in (PaymentStatus.PENDING, PaymentStatus.NOT_CHARGED)
    )
    if unsure:
        try:
            payment = payment_lookup(payment=payment)
        except PaymentInDoubt as exc:
            raise OrderNotRetryable(
                order,
                "the payment service did not answer about its earlier charge; try again "
                "in a moment.",
            ) from exc
    if payment.status == PaymentStatus.CAPTURED:  # (a status in doubt was looked up above)
        raise OrderNotRetryable(
            order,
            f"its payment {payment.provider_reference or payment.pk} was captured; it "
            "must be refunded (the reconciler refunds captures on failed orders) before the "
            "order is charged again.",
        )
    return payment


def order_retry(*, order: Order, operator: str) -> Order:
    """Re-open a failed order for an operator (failed -> pending, a deliberate exception to
    the lifecycle, see REOPEN_TRANSITIONS) and enqueue its processing after the commit;
    returns it pending. `operator` (a username) is logged.

    The order gets a NEW payment, with a new idempotency key: the old key holds the old
    outcome at the provider (a decline stays a decline). The old Payment row is kept for
    history, named in the log entry. Refused (OrderNotRetryable, 409) unless the order is
    failed and its old payment is known not captured: a payment whose outcome was never heard
    for certain is looked up by its key first, over HTTP, outside any transaction.

    A failed order holds no stock, so nothing is released; processing reserves it afresh.
    Not idempotent: a second call finds the order no longer failed and is refused.
    """
    order = Order.objects.select_related("payment").get(pk=order.pk)
    if order.status != S.FAILED:
        raise OrderNotRetryable(order, f"it is {order.status}; only a failed order can be.")
    previous = _previous_payment_settled(order=order)
    _reopen(order=order, previous=previous, operator=operator)
    return order


@_transition_service
def _reopen(*, order: Order, previous: Payment, operator: str) -> None:
    """failed -> pending with a new payment, under the order's row lock."""
    status, payment_id = (
        Order.objects.select_for_update().values_list("status", "payment_id").get(pk=order.pk)
    )
    if status != S.FAILED or payment_id != previous.pk:
        order.status = status
        raise OrderNotRetryable(order, "it changed while being retried; look at it again.")
    failure_reason = order.failure_reason
    payment = payment_create(
        reference=f"order:{order.uid}", amount=order.total, currency=order.currency
    )
    Order.objects.filter(pk=order.pk).update(payment=payment)
    _transition(
        order,
        to=S.PENDING,
        event="retried",
        message=f"Retried by {operator}: processing again with a new payment.",
        data={
            "by": operator,
            "previous_failure_reason": failure_reason,
            "payment_id": payment.pk,
            "previous_payment": {
                "id": previous.pk,
                "status": previous.status,
                "provider_reference": previous.provider_reference,
                "idempotency_key": previous.idempotency_key,
            },
        },
        reopen=True,
    )
    order.payment = payment
    transaction.on_commit(lambda: enqueue_order_processing(order.pk))


class OrderNotConfirmed(Conflict):
    code = "order_not_confirmed"

    def __init__(self, order: Order):
        super().__init__(
            f"Order {order.pk} is {order.status}: only a confirmed order goes to the warehouse.",
            details={"order_id": order.pk, "status": order.status},
        )


@transaction.atomic
def order_repush_fulfilment(*, order: Order, operator: str) -> None:
    """Publish a confirmed order's fulfilment again (after the commit), e.g. once the
    warehouse's refusal was sorted out; logged with `operator`. Refused (OrderNotConfirmed)
    for any other status. Safe to run twice: the warehouse takes a shipment once per order
    and the fulfilled transition is guarded."""
    status = Order.objects.select_for_update().values_list("status", flat=True).get(pk=order.pk)
    if status != S.CONFIRMED:
        order.status = status
        raise OrderNotConfirmed(order)
    order_log(
        order=order,
        event="fulfilment_repushed",
        from_status=status,
        to_status=status,
        message=f"Pushed to the warehouse again by {operator}.",
        data={"by": operator},
    )
    transaction.on_commit(lambda: enqueue_order_fulfilment(order.pk))
