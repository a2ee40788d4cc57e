"""People stepping into the workflow: a customer or an operator cancelling an order, an
operator retrying a failed order or pushing a confirmed one to the warehouse again.

Each goes through the same guarded transitions as the workflow (orders/transitions.py), so it
composes with a worker processing the same order at the same moment: whichever comes second
finds the order moved and judges it again from where it is. `actor` is the user acting.
"""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.clock import db_now
from core.errors import Conflict, DomainError
from inventory.fulfilment import WarehouseRejected, WarehouseUnavailable, shipment_cancel
from orders import events
from orders.dispatch import wake_order_workers
from orders.models import Order, OrderEvent, OrderStatus
from orders.scheduling import orders_push_again
from orders.transitions import order_transition
from orders.workflow import orders_fulfil
from payments.models import Payment, PaymentStatus
from payments.services import (
    PaymentInDoubt,
    PaymentRefused,
    payment_create,
    payment_lookup,
    payment_settle,
    payments_abandon,
)

S = OrderStatus
E = OrderEvent


# --- Cancellation (by the customer over the API, or by an operator in the admin) -----------


class OrderRefused(Conflict):
    """What was asked cannot be done with the order as it stands (409): the message says why,
    the details name the order and its status."""

    def __init__(self, order: Order, message: str):
        super().__init__(message, details={"order_id": order.pk, "status": order.status})


class OrderNotCancellable(OrderRefused):
    code = "order_not_cancellable"

    def __init__(self, order: Order, reason: str):
        why = f"is {order.status} and can no longer be cancelled: {reason}"
        super().__init__(order, f"Order {order.pk} {why}")


class CancellationUnfinished(DomainError):
    """A confirmed order's cancellation was accepted but could not finish at once. The order
    will not ship; the reconciler finishes the cancellation, and the caller may try again."""

    status_code = 503


class RefundUnavailable(CancellationUnfinished):
    code = "payment_service_unavailable"
    default_message = (
        "The payment service did not answer the refund, so the order is not cancelled yet. It "
        "will not ship, and its cancellation completes by itself once the payment service "
        "answers; you may also try again in a moment."
    )


class WarehouseSilent(CancellationUnfinished):
    code = "warehouse_unavailable"
    default_message = (
        "The warehouse did not answer whether it has shipped the order, so it is not cancelled "
        "yet. It will not be pushed to the warehouse again, and its cancellation goes on by "
        "itself once the warehouse answers; you may also try again in a moment."
    )


class WarehouseRefusedCancel(DomainError):
    code = "warehouse_refused"
    status_code = 502
    default_message = (
        "The warehouse refused to cancel the shipment, so the order is not cancelled; it will "
        "not ship either. An operator will look at it."
    )


class RefundRefused(DomainError):
    code = "refund_refused"
    status_code = 502
    default_message = (
        "The payment service refused the refund; the order is not cancelled and will not ship. "
        "An operator will look at it."
    )


NOT_CANCELLABLE: dict[str, str] = {
    S.FULFILLED: "the warehouse has already shipped it.",
    S.FAILED: "it has already failed and holds neither stock nor a charge.",
}


def _load(order_id: int) -> Order:
    return Order.objects.select_related("payment").get(pk=order_id)


def order_cancel(*, order: Order, actor, via: str) -> Order:
    """Cancel an order; returns it cancelled. `via` ("api", "admin") is logged with `actor`.

    pending or reserved: -> cancelled in one transaction, reserved units released. A reserved
    order may have a charge on its way: its payment is abandoned with it, so the worker that
    gets the capture refunds it, and otherwise the reconciler's sweep of abandoned payments
    does.
    confirmed: the cancellation is requested first (from then on the order is not pushed to
    the warehouse), then the warehouse is asked never to ship it (OrderNotCancellable if it
    has: the order is recorded fulfilled), then the payment is refunded, then confirmed ->
    cancelled with the committed units released. The calls run outside any transaction; if
    one goes unanswered (503) or the refund is refused (502) the order stays confirmed,
    unshipped, and the reconciler finishes the cancellation.
    fulfilled or failed: OrderNotCancellable (409). Already cancelled: returned unchanged.
    Safe to run twice and concurrently.
    """
    while True:
        order = _load(order.pk)
        if order.status == S.CANCELLED:
            return order
        if order.status in NOT_CANCELLABLE:
            raise OrderNotCancellable(order, NOT_CANCELLABLE[order.status])
        if order.status in (S.PENDING, S.RESERVED):
            if _cancel_unpaid(order, actor=actor, via=via):
                return order
            continue  # it moved meanwhile: judge it again
        if order.cancel_requested_at is None and not order_cancel_request(
            order=order, actor=actor, via=via
        ):
            continue
        order_cancel_finish(order=order, actor=actor)
        return _load(order.pk)


def _by(actor, order: Order, event: OrderEvent, source: str, message: str, data: dict) -> bool:
    """A person's transition of one order (orders/transitions.py); False if it moved
    meanwhile."""
    return bool(
        order_transition(
            orders=[order], event=event, source=source, actor=actor, message=message, data=data
        )
    )


def _cancel_unpaid(order: Order, *, actor, via: str) -> bool:
    text = f"Cancelled by {actor.get_username()} ({via})."
    return _by(actor, order, E.CANCELLED, order.status, text, {"via": via, "refunded": False})


@transaction.atomic
def order_cancel_request(*, order: Order, actor, via: str) -> bool:
    """A confirmed order is to be cancelled: from now on it is not pushed to the warehouse.
    False (nothing changed) when it is no longer confirmed or already being cancelled."""
    now = timezone.now()
    requested = Order.objects.filter(
        pk=order.pk, status=S.CONFIRMED, cancel_requested_at__isnull=True
    ).update(cancel_requested_at=now, cancel_requested_by=actor, cancel_requested_via=via)
    if not requested:
        return False
    order.cancel_requested_at, order.cancel_requested_by = now, actor
    order.cancel_requested_via = via
    events.cancel_requested_event(order=order, actor=actor, via=via)
    return True


def order_cancel_finish(*, order: Order, actor=None) -> None:
    """Take a confirmed order whose cancellation was requested the rest of the way: the
    warehouse asked never to ship it, the payment refunded, confirmed -> cancelled. Each step
    is safe to repeat, so the reconciler calls this for a cancellation left unfinished.
    Raises OrderNotCancellable when the warehouse has shipped (recorded: fulfilled),
    WarehouseSilent or RefundUnavailable (503) when a call went unanswered, RefundRefused or
    WarehouseRefusedCancel (502); the order then stays confirmed and unshipped. Outside any
    transaction."""
    actor = actor or order.cancel_requested_by
    try:
        shipped = shipment_cancel(order_ref=str(order.uid))
    except WarehouseUnavailable as exc:
        events.cancel_stalled_event(
            order=order, event=E.CANCEL_SHIPMENT_UNANSWERED, error=str(exc), actor=actor
        )
        raise WarehouseSilent() from exc
    except WarehouseRejected as exc:
        events.cancel_stalled_event(
            order=order, event=E.CANCEL_SHIPMENT_REFUSED, error=str(exc), actor=actor
        )
        raise WarehouseRefusedCancel() from exc
    if shipped is not None:
        orders_fulfil([order], {order.pk: shipped})
        order.refresh_from_db(fields=["status"])
        events.cancel_refused_shipped_event(order=order, actor=actor)
        raise OrderNotCancellable(order, NOT_CANCELLABLE[S.FULFILLED])
    payment = order.payment
    try:
        payment_settle(payment=payment)  # a refund in doubt is looked up first
    except (PaymentInDoubt, PaymentRefused) as exc:
        unanswered = isinstance(exc, PaymentInDoubt)
        events.cancel_stalled_event(
            order=order,
            event=E.CANCEL_REFUND_UNANSWERED if unanswered else E.CANCEL_REFUND_REFUSED,
            error=str(exc),
            actor=actor,
        )
        raise (RefundUnavailable() if unanswered else RefundRefused()) from exc
    via = order.cancel_requested_via or "reconciler"
    by = f" by {actor.get_username()}" if actor else ""
    refund = {
        "via": via,
        "refunded": payment.status == PaymentStatus.REFUNDED,
        "payment_reference": payment.provider_reference,
    }
    _by(actor, order, E.CANCELLED, S.CONFIRMED, f"Cancelled{by} ({via}); payment refunded.", refund)


# --- Operator actions (admin): retry a failed order, push a confirmed one again ------------


class OrderNotRetryable(OrderRefused):
    code = "order_not_retryable"

    def __init__(self, order: Order, reason: str):
        super().__init__(order, f"Order {order.pk} cannot be retried: {reason}")


def _charge_may_be_on_its_way(payment: Payment) -> bool:
    """A charge request sent lately and not answered may not have reached the provider yet,
    so a "no charge" proves nothing: within a request's whole timeout (and a margin) of the
    last one."""
    if payment.last_attempt_at is None or not payment.outcome_unknown:
        return False
    timeout = settings.PAYMENT_CONNECT_TIMEOUT + settings.PAYMENT_READ_TIMEOUT
    return db_now() - payment.last_attempt_at < timedelta(seconds=2 * timeout)


def _previous_payment_settled(*, order: Order) -> Payment:
    """The failed order's payment, known not captured (else OrderNotRetryable). A payment
    whose outcome only the provider knows is looked up by its key first, over HTTP."""
    payment = order.payment
    if _charge_may_be_on_its_way(payment):
        raise OrderNotRetryable(
            order,
            "its last charge request may still be on its way to the payment service; try again "
            "in a minute.",
        )
    if payment.outcome_unknown:
        try:
            payment_lookup(payment=payment)
        except PaymentInDoubt as exc:
            raise OrderNotRetryable(
                order,
                "the payment service did not answer about its earlier charge; try again "
                "in a moment.",
            ) from exc
    if payment.status in (PaymentStatus.CAPTURED, PaymentStatus.REFUND_IN_DOUBT):
        raise OrderNotRetryable(
            order,
            f"its payment {payment.provider_reference or payment.pk} was captured; it "
            "must be refunded (the reconciler refunds captures on failed orders) before the "
            "order is charged again.",
        )
    return payment


def order_retry(*, order: Order, actor) -> Order:
    """Re-open a failed order for an operator (failed -> retried -> pending, the one way out
    of an end state) with a new payment, and enqueue its processing after the commit;
    returns it pending.

    The old payment stays, abandoned (a capture found on it later is refunded); the new one
    has a new idempotency key, since the old key holds the old outcome at the provider.
    Refused (OrderNotRetryable, 409) unless the order is failed and its old payment is known
    not captured: one whose outcome only the provider knows is looked up first, over HTTP,
    outside any transaction, and one charged within the last moments is not judged yet.
    A failed order holds no stock; processing reserves it afresh with a new stock budget.
    Not idempotent: a second call finds the order no longer failed and is refused.
    """
    order = _load(order.pk)
    if order.status != S.FAILED:
        raise OrderNotRetryable(order, f"it is {order.status}; only a failed order can be.")
    previous = _previous_payment_settled(order=order)
    failure_reason = order.failure_reason
    with transaction.atomic():
        now = timezone.now()
        payment = payment_create(order_uid=order.uid, amount=order.total, currency=order.currency)
        # The new payment in the same statement as the status: only if the order is still
        # failed with the payment we judged.
        if not Order.objects.filter(pk=order.pk, status=S.FAILED, payment=previous).update(
            payment=payment, updated_at=now
        ):
            raise OrderNotRetryable(order, "it changed while being retried; look at it again.")
        order.payment = payment
        replaced = {
            "id": previous.pk,
            "status": previous.status,
            "provider_reference": previous.provider_reference,
            "idempotency_key": previous.idempotency_key,
        }
        text = f"Retried by {actor.get_username()}: processing again with a new payment."
        facts = {
            "previous_failure_reason": failure_reason,
            "payment_id": payment.pk,
            "previous_payment": replaced,
        }
        _by(actor, order, E.RETRIED, S.FAILED, text, facts)
        payments_abandon(payment_ids=[previous.pk])
        transaction.on_commit(wake_order_workers)
    return order


class OrderNotConfirmed(OrderRefused):
    code = "order_not_confirmed"

    def __init__(self, order: Order):
        why = "only a confirmed order goes to the warehouse"
        super().__init__(order, f"Order {order.pk} is {order.status}: {why}.")


@transaction.atomic
def order_repush_fulfilment(*, order: Order, actor) -> None:
    """Push a confirmed order to the warehouse again (a worker woken after the commit takes
    it up), e.g. once the warehouse's refusal was sorted out; logged with `actor`. Refused
    (OrderNotConfirmed) for any other status, and for an order being cancelled. Safe to run
    twice: the warehouse takes a shipment once per order and the fulfilled transition is
    guarded."""
    order.status, order.cancel_requested_at = Order.objects.values_list(
        "status", "cancel_requested_at"
    ).get(pk=order.pk)
    if order.status != S.CONFIRMED or order.cancel_requested_at is not None:
        raise OrderNotConfirmed(order)
    events.fulfilment_repushed_event(order=order, actor=actor)
    orders_push_again([order.pk])
    transaction.on_commit(wake_order_workers)
