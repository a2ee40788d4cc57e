"""Order writes of the workflow: creating an order, and the transitions the workflow takes
(reserve, confirm, fail, fulfil), each applied through orders/transitions.py, guarded by the
state (and payment) it was decided for. The people's actions (cancel, retry, re-push) are in
orders/interventions.py, through the same module."""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction

from catalog.models import Product
from core.errors import DomainError
from core.inserts import Inserted, insert_together
from inventory.fulfilment import Shipment
from inventory.models import MovementReason
from inventory.services import stock_apply_warehouse_levels
from inventory.types import ShippedLevel
from orders import events
from orders.dispatch import wake_order_workers
from orders.events import report_after_commit
from orders.models import Order, OrderEvent, OrderLine, OrderLog, OrderStatus
from orders.selectors import order_lines
from orders.transitions import order_transition
from payments.models import Payment
from payments.services import payment_new
from webhooks.models import EventType
from webhooks.outbox import outbox_events, wake_after_commit

S = OrderStatus
E = OrderEvent


class InvalidOrderItems(DomainError):
    code = "validation_error"
    status_code = 400
    default_message = "Invalid input."


@dataclass(frozen=True)
class OrderItem:
    product_id: int
    quantity: int


def order_create(*, customer, items: Sequence[OrderItem]) -> Order:
    """Persist an order, its lines (prices snapshotted), its pending payment and the first
    log entry together: one statement on PostgreSQL, one transaction elsewhere
    (core/inserts.py); workers are woken after commit. Not idempotent by itself (see the
    API's Idempotency-Key). Returns the order with its lines prefetched."""
    product_ids = [item.product_id for item in items]
    products = {
        p.id: p
        for p in Product.objects.filter(pk__in=product_ids, is_active=True).only(
            "id", "sku", "price"
        )
    }
    if len(products) < len(product_ids):  # per line, where the serializer puts line errors
        raise InvalidOrderItems(
            details={
                "items": {
                    n: {"product_id": [f"No active product {pid}."]}
                    for n, pid in enumerate(product_ids)
                    if pid not in products
                }
            }
        )
    total = sum((products[i.product_id].price * i.quantity for i in items), Decimal("0.00"))
    order = Order(customer=customer, total=total, currency=settings.ORDER_CURRENCY)
    # The payment names the order by its uid, set already; the order names the payment.
    payment = payment_new(order_uid=order.uid, amount=total, currency=order.currency)
    order.payment_id = Inserted(payment)
    lines = [
        OrderLine(
            order_id=Inserted(order),
            product=products[i.product_id],
            quantity=i.quantity,
            unit_price=products[i.product_id].price,
        )
        for i in sorted(items, key=lambda i: i.product_id)  # OrderLine.Meta.ordering
    ]
    message = f"{len(items)} line(s), total {total} {order.currency}"
    log = OrderLog(
        order_id=Inserted(order),
        event=E.CREATED,
        from_status="",
        to_status=S.PENDING,
        message=message,
        data={"lines": len(items), "total": str(total)},
        actor=customer,
    )
    event = outbox_events(
        EventType.ORDER_CREATED, [(Inserted(order), {"status": S.PENDING, "previous_status": ""})]
    )
    insert_together([payment], [order], lines, [log], event)
    if event:
        wake_after_commit()
    # The order is returned as created, lines and products included, so that the caller can
    # answer with it without reading back what it has just written.
    prefetched = order.lines.all()
    prefetched._result_cache, prefetched._prefetch_done = lines, True
    order._prefetched_objects_cache = {"lines": prefetched}
    report_after_commit(order.pk, E.CREATED, f"- -> pending {message}")
    transaction.on_commit(wake_order_workers)
    return order


def order_reserve(*, order: Order) -> bool:
    """pending -> reserved, holding stock for every line or none (InsufficientStock, nothing
    changed). False when the order is no longer pending. Safe to run twice."""
    quantities = {line.product_id: line.quantity for line in order_lines(order)}
    return bool(
        order_transition(
            orders=[order],
            event=E.RESERVED,
            source=S.PENDING,
            message="Stock reserved for every line.",
            data={"quantities": {str(k): v for k, v in quantities.items()}},
        )
    )


def order_confirm(*, order: Order, payment: Payment) -> bool:
    """reserved -> confirmed once `payment` was captured: reserved units become committed.
    Applies only while the order is reserved and `payment` is its current payment; False
    otherwise (cancelled, failed or expired meanwhile, or retried with a new payment: the
    capture is refunded by whoever finds it). Safe to run twice."""
    if payment.pk != order.payment_id:
        return False
    return bool(
        order_transition(
            orders=[order],
            event=E.CONFIRMED,
            source=S.RESERVED,
            message="Payment captured.",
            data={"payment_reference": payment.provider_reference, "attempt": payment.attempts},
        )
    )


def order_fail(
    *,
    order: Order,
    event: OrderEvent,
    source: OrderStatus,
    message: str,
    data: dict[str, Any] | None = None,
) -> bool:
    """source -> failed, `event` naming the reason (out_of_stock, payment_declined,
    payment_error, reservation_expired); a reserved order's stock is released and its
    payment abandoned (a capture found on it later is refunded), in one transaction. Applies
    only while the order is in `source`, the state the failure was decided for; False
    otherwise. Safe to run twice."""
    return bool(
        order_transition(orders=[order], event=event, source=source, message=message, data=data)
    )


def order_fulfil(*, order: Order, shipment: Shipment) -> bool:
    """confirmed -> fulfilled with the warehouse's shipment answer: the committed units leave
    exactly once (the transition guards it) and on_hand/version follow the answer by
    compare-and-set; a cancellation under way ends here (it has shipped). False when the
    order is no longer confirmed. Safe to run twice.

    An order the warehouse shipped although it was cancelled (which the cancellation's
    question to the warehouse is there to prevent) keeps its status; the warehouse's new
    levels are recorded and the event logged for an operator.
    """
    product_of = {line.product.sku: line.product_id for line in order_lines(order)}
    levels = {
        product_of[lvl.sku]: ShippedLevel(order.pk, lvl)
        for lvl in shipment.levels
        if lvl.sku in product_of
    }
    if order_transition(
        orders=[order],
        event=E.FULFILLED,
        source=S.CONFIRMED,
        message="The warehouse acknowledged the shipment.",
        data={"shipment_id": shipment.shipment_id},
        levels=levels,
    ):
        return True
    record_shipped_after_cancel(order=order, shipment=shipment)
    return False


def record_shipped_after_cancel(*, order: Order, shipment: Shipment) -> None:
    """A shipment whose fulfilment did not apply: if the order was cancelled meanwhile (which
    the cancellation's question to the warehouse is there to prevent), it stays cancelled,
    the warehouse's new levels are recorded and the event logged for an operator."""
    order.refresh_from_db(fields=["status", "failure_reason", "cancel_requested_at"])
    if order.status == S.CANCELLED:
        with transaction.atomic():
            stock_apply_warehouse_levels(
                levels=shipment.levels, order_id=order.pk, reason=MovementReason.SHIPMENT_ANSWER
            )
            events.shipped_after_cancel_event(order=order, shipment_id=shipment.shipment_id)
