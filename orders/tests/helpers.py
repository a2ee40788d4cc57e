"""Helpers for order tests: create orders through the real service, drive the workflow the
way the task does, and read back what an operator would see."""

from orders.models import Order, OrderEvent, OrderStatus
from orders.services import OrderItem, order_confirm, order_create, order_reserve
from orders.transitions import order_transition
from orders.workflow import order_process
from payments.gateway import get_gateway
from payments.models import Payment
from payments.services import payment_charge


def place_order(customer, *lines: tuple[int, int]) -> Order:
    return order_create(
        customer=customer, items=[OrderItem(product_id=p, quantity=q) for p, q in lines]
    )


def run_to_completion(order_id: int, *, max_calls: int = 20) -> list[float]:
    """Call the workflow as Celery would, without waiting out the countdowns; returns the
    retry delays it asked for."""
    delays = []
    for _ in range(max_calls):
        step = order_process(order_id=order_id)
        if step.done:
            return delays
        delays.append(step.retry_in)
    raise AssertionError(f"order {order_id} still not done after {max_calls} calls")


def confirm_order(order_id: int) -> Order:
    """Reserve, charge and confirm the order as the workflow does, stopping before its push to
    the warehouse (which order_process makes next)."""
    order = Order.objects.select_related("payment").get(pk=order_id)
    order_reserve(order=order)
    assert order_confirm(order=order, payment=payment_charge(payment=order.payment))
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
