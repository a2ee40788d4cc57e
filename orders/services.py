"""Order writes: creation and every status transition.

A transition is a conditional UPDATE from the status we read (`WHERE status = <from>`), so
two workers handling the same order serialize on the order row and only one of them moves
it; the stock change that belongs to a transition runs in the same transaction, after it.
Lock order is therefore always: the order row, then stock rows by ascending product id.
"""

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.models import Product
from core.errors import Conflict, DomainError
from inventory.services import (
    stock_apply_warehouse_levels,
    stock_confirm,
    stock_release,
    stock_reserve,
    stock_ship,
)
from inventory.warehouse import Shipment
from orders.dispatch import enqueue_order_processing
from orders.models import FailureReason, Order, OrderLine, OrderLog, OrderStatus
from orders.selectors import order_lines
from payments.models import Payment
from payments.services import (
    payment_create,
)

logger = logging.getLogger(__name__)

S = OrderStatus
ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    S.PENDING: {S.RESERVED, S.FAILED, S.CANCELLED},
    S.RESERVED: {S.CONFIRMED, S.FAILED, S.CANCELLED},
    S.CONFIRMED: {S.FULFILLED, S.CANCELLED},
    S.FULFILLED: set(),
    S.FAILED: set(),
    S.CANCELLED: set(),
}
# The one way out of an end state, for operators only: order_retry re-opens a failed order.
# Only _transition(reopen=True) allows it, and only order_retry passes that, so the workflow
# can never re-open an order by itself.
REOPEN_TRANSITIONS: dict[str, set[str]] = {S.FAILED: {S.PENDING}}


class IllegalTransition(Conflict):
    code = "illegal_transition"

    def __init__(self, order: Order, to: str):
        super().__init__(
            f"Order {order.pk} cannot go from {order.status} to {to}.",
            details={"order_id": order.pk, "status": order.status, "requested": to},
        )


class InvalidOrderItems(DomainError):
    code = "validation_error"
    status_code = 400
    default_message = "Invalid input."


@dataclass(frozen=True)
class OrderItem:
    product_id: int
    quantity: int


def order_log(
    *,
    order: Order,
    event: str,
    from_status: str,
    to_status: str,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> OrderLog:
    entry = OrderLog.objects.create(
        order=order,
        event=event,
        from_status=from_status,
        to_status=to_status,
        message=message,
        data=data or {},
    )
    # Only what committed is reported: a transition rolled back never happened.
    transaction.on_commit(
        lambda: logger.info(
            "order %s %s: %s -> %s %s",
            order.pk,
            event,
            from_status or "-",
            to_status,
            message,
            extra={"order_id": order.pk, "event": event},
        )
    )
    return entry


def _transition_service(func: Callable[..., bool]) -> Callable[..., bool]:
    """One transaction per transition service; if it rolls back, the caller's Order instance
    is restored too, so it never shows a status the database does not have."""

    @functools.wraps(func)
    def wrapper(*, order: Order, **kwargs) -> bool:
        snapshot = (order.status, order.failure_reason, order.updated_at)
        try:
            with transaction.atomic():
                return func(order=order, **kwargs)
        except BaseException:
            order.status, order.failure_reason, order.updated_at = snapshot
            raise

    return wrapper


def _transition(
    order: Order,
    *,
    to: str,
    event: str,
    message: str = "",
    data: dict[str, Any] | None = None,
    failure_reason: str = "",
    reopen: bool = False,
) -> str | None:
    """Move `order` to `to` inside the caller's transaction and log it; returns the status
    it moved from, or None, changing nothing, when the order is already in `to` (a repeated
    step). Raises IllegalTransition when `to` is not allowed from the current status.
    `reopen` allows REOPEN_TRANSITIONS instead (order_retry only).
    """
    if order.status == to:
        return None
    allowed = REOPEN_TRANSITIONS if reopen else ALLOWED_TRANSITIONS
    if to not in allowed.get(order.status, set()):
        raise IllegalTransition(order, to)
    from_status = order.status
    now = timezone.now()
    moved = Order.objects.filter(pk=order.pk, status=from_status).update(
        status=to, failure_reason=failure_reason, updated_at=now
    )
    if not moved:
        # Someone else moved it since we read it: judge the transition from where it is now.
        order.status = Order.objects.values_list("status", flat=True).get(pk=order.pk)
        return _transition(
            order,
            to=to,
            event=event,
            message=message,
            data=data,
            failure_reason=failure_reason,
            reopen=reopen,
        )
    order.status, order.failure_reason, order.updated_at = to, failure_reason, now
    order_log(
        order=order, event=event, from_status=from_status, to_status=to, message=message, data=data
    )
    return from_status


def _quantities(order: Order) -> dict[int, int]:
    return {line.product_id: line.quantity for line in order_lines(order)}


@transaction.atomic
def order_create(*, customer, items: Sequence[OrderItem]) -> Order:
    """Persist an order, its lines (prices snapshotted), its pending payment and the first
    log entry in one transaction; processing is enqueued after commit. Not idempotent by
    itself (see the API's Idempotency-Key). Returns the order with its lines prefetched."""
    product_ids = [item.product_id for item in items]
    products = {
        p.id: p
        for p in Product.objects.filter(pk__in=product_ids, is_active=True).only(
            "id", "sku", "price"
        )
    }
    unknown = sorted(set(product_ids) - set(products))
    if unknown:
        raise InvalidOrderItems(
            details={"items": [f"Unknown or inactive product id {pid}." for pid in unknown]}
        )
    total = sum((products[i.product_id].price * i.quantity for i in items), Decimal("0.00"))
    order = Order(customer=customer, total=total, currency=settings.ORDER_CURRENCY)
    order.payment = payment_create(
        reference=f"order:{order.uid}", amount=total, currency=order.currency
    )
    order.save()
    lines = OrderLine.objects.bulk_create(
        [
            OrderLine(
                order=order,
                product=products[i.product_id],
                quantity=i.quantity,
                unit_price=products[i.product_id].price,
            )
            for i in sorted(items, key=lambda i: i.product_id)  # OrderLine.Meta.ordering
        ]
    )
    # The order is returned as created, lines and products included, so that the caller can
    # answer with it without reading back what it has just written.
    prefetched = order.lines.all()
    prefetched._result_cache, prefetched._prefetch_done = lines, True
    order._prefetched_objects_cache = {"lines": prefetched}
    order_log(
        order=order,
        event="created",
        from_status="",
        to_status=S.PENDING,
        message=f"{len(items)} line(s), total {total} {order.currency}",
        data={"lines": len(items), "total": str(total)},
    )
    transaction.on_commit(lambda: enqueue_order_processing(order.pk))
    return order


@_transition_service
def order_reserve(*, order: Order) -> bool:
    """pending -> reserved, holding stock for every line or none (InsufficientStock).
    Returns False if the order was already past pending. Safe to run twice."""
    quantities = _quantities(order)
    if not _transition(
        order,
        to=S.RESERVED,
        event="reserved",
        message="Stock reserved for every line.",
        data={"quantities": {str(k): v for k, v in quantities.items()}},
    ):
        return False
    stock_reserve(quantities=quantities)
    return True


@_transition_service
def order_confirm(*, order: Order, payment: Payment) -> bool:
    """reserved -> confirmed after the charge was captured: reserved units become committed.
    Returns False if it was already confirmed, or, with `order.status` telling which, if it
    was cancelled or failed while the charge was on its way (the caller refunds the capture).
    The caller pushes the confirmed order to the warehouse. Safe to run twice."""
    try:
        moved = _transition(
            order,
            to=S.CONFIRMED,
            event="confirmed",
            message="Payment captured.",
            data={"payment_reference": payment.provider_reference, "attempt": payment.attempts},
        )
    except IllegalTransition:
        if order.status in (S.CANCELLED, S.FAILED):
            return False
        raise
    if not moved:
        return False
    stock_confirm(quantities=_quantities(order))
    return True


@_transition_service
def order_fail(
    *, order: Order, reason: FailureReason, message: str, data: dict[str, Any] | None = None
) -> bool:
    """-> failed/<reason>; stock held by a reserved order is released in the same
    transaction. Returns False if it had already failed, or had been cancelled meanwhile (it
    stays cancelled). Safe to run twice."""
    try:
        moved_from = _transition(
            order,
            to=S.FAILED,
            event=reason.value,
            message=message,
            data=data,
            failure_reason=reason,
        )
    except IllegalTransition:
        if order.status == S.CANCELLED:
            return False
        raise
    if moved_from is None:
        return False
    if moved_from == S.RESERVED:
        stock_release(quantities=_quantities(order))
    return True


@_transition_service
def order_fulfil(*, order: Order, shipment: Shipment) -> bool:
    """confirmed -> fulfilled with the warehouse's shipment answer: the committed units leave
    exactly once (this transition guards it) and on_hand/version follow the answer by
    compare-and-set. Returns False if it was already fulfilled. Safe to run twice.

    An order cancelled while its shipment was on the way (the guarded UPDATE finds it so)
    stays cancelled: its units were already released, so only the warehouse's new levels are
    recorded, and the event logged.
    """
    product_of = {line.product.sku: line.product_id for line in order_lines(order)}
    levels = {product_of[lvl.sku]: lvl for lvl in shipment.levels if lvl.sku in product_of}
    try:
        moved = _transition(
            order,
            to=S.FULFILLED,
            event="fulfilled",
            message="The warehouse acknowledged the shipment.",
            data={"shipment_id": shipment.shipment_id},
        )
    except IllegalTransition:
        if order.status != S.CANCELLED:
            raise
        stock_apply_warehouse_levels(levels=levels.values())  # locked in product id order
        order_log(
            order=order,
            event="shipped_after_cancel",
            from_status=order.status,
            to_status=order.status,
            message="The warehouse shipped this order after it was cancelled.",
            data={"shipment_id": shipment.shipment_id},
        )
        return False
    if not moved:
        return False
    stock_ship(quantities=_quantities(order), levels=levels)
    return True
