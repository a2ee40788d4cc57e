"""Helpers for order tests: create orders through the real service, drive the engine the way
a worker does (a batch of the orders given), and read back what an operator would see."""

from datetime import datetime, timedelta
from typing import cast

from django.utils import timezone

from orders.models import Order, OrderEvent, OrderStatus
from orders.services import OrderItem, order_create
from orders.transitions import order_transition
from orders.workflow import Step, orders_advance, orders_apply_payments
from payments.charges import payments_try
from payments.gateway import get_gateway
from payments.models import Payment
from payments.services import UNDECIDED, payments_count_tries


def later(seconds: float) -> datetime:
    return timezone.now() + timedelta(seconds=seconds)


def place_order(customer, *lines: tuple[int, int]) -> Order:
    return order_create(
        customer=customer, items=[OrderItem(product_id=p, quantity=q) for p, q in lines]
    )


def ids(orders) -> list[int]:
    return [o.pk for o in orders]


def load(*order_ids: int) -> list[Order]:
    """The orders as a worker's claim loads them (with their payments), in id order."""
    return list(Order.objects.select_related("payment").filter(pk__in=order_ids).order_by("pk"))


def advance(*order_ids: int) -> dict[int, Step]:
    """One batch of these orders through the engine, as a worker's claim would hand it."""
    return orders_advance(load(*order_ids))


def run_to_completion(order_id: int, *others: int, max_calls: int = 20) -> list[float]:
    """Advance the batch of these orders as workers would, without waiting out the retries'
    backoff, until every one is done; returns the retry delays the first one asked for."""
    delays = []
    waiting = [order_id, *others]
    for _ in range(max_calls):
        steps = advance(*waiting)
        if order_id in waiting and not steps[order_id].done:
            delays.append(cast(float, steps[order_id].retry_in))  # a wait says how long
        waiting = [pk for pk in waiting if not steps[pk].done]
        if not waiting:
            return delays
    raise AssertionError(f"orders {waiting} still not done after {max_calls} batches")


def reserve(order: Order) -> bool:
    """pending -> reserved, as the engine's first step (False when it did not get its stock,
    or is no longer pending)."""
    return bool(
        order_transition(orders=[order], event=OrderEvent.RESERVED, source=OrderStatus.PENDING)
    )


def try_payment(payment: Payment) -> Payment:
    """One try at settling the payment's charge, as the engine's pay step makes it (counted,
    then sent: a first charge request, or a lookup and a charge again); returns it."""
    first = payment.attempts == 0
    if payment.status not in UNDECIDED or not payments_count_tries(payments=[payment]):
        payment.refresh_from_db()  # settled, or taken by another actor: as it stands
        return payment
    for _ in payments_try(first=[payment] if first else [], again=[] if first else [payment]):
        pass
    return payment


def confirm_order(order_id: int) -> Order:
    """Reserve, charge and confirm the order as the engine does, stopping before its push to
    the warehouse (which the engine makes next)."""
    [order] = load(order_id)
    assert reserve(order)
    try_payment(order.payment)
    assert orders_apply_payments([order]).confirmed
    return order


def log_events(order: Order) -> list[tuple[str, str, str]]:
    return list(order.logs.order_by("id").values_list("from_status", "to_status", "event"))


def fulfil_without_warehouse(order: Order) -> Order:
    """Record a confirmed order as shipped, as the warehouse's answer would (levels aside)."""
    order = Order.objects.select_related("payment").get(pk=order.pk)
    assert order_transition(
        orders=[order], event=OrderEvent.FULFILLED, source=OrderStatus.CONFIRMED
    ), order.status
    return order


def capture_at_provider(payment: Payment) -> None:
    """The payment service stores a capture for the payment's key (as if a request of ours
    had reached it), whatever our record of the payment says."""
    get_gateway().create_charge(
        idempotency_key=payment.idempotency_key,
        amount=payment.amount,
        currency=payment.currency,
        reference=payment.reference,
    )
