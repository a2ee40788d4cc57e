"""Creating an order. Everything that moves an order afterwards is the engine's
(orders/workflow.py), the reconciler's (orders/reconciler.py) or the people's
(orders/interventions.py), through orders/transitions.py."""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from catalog.models import Product
from core.errors import DomainError
from core.inserts import Inserted, insert_together
from orders.dispatch import wake_order_workers
from orders.events import report_after_commit
from orders.models import Order, OrderEvent, OrderLine, OrderLog, OrderStatus
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
    # (Django's private prefetch state, which the stubs do not declare.)
    prefetched._result_cache, prefetched._prefetch_done = lines, True  # type: ignore[attr-defined]
    order._prefetched_objects_cache = {"lines": prefetched}  # type: ignore[attr-defined]
    report_after_commit(order.pk, E.CREATED, f"- -> pending {message}")
    transaction.on_commit(wake_order_workers)
    return order
