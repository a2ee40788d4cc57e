"""What must hold after every seed, whatever its faults: the invariants of money and stock,
and the bounds on how long and how often anything is tried."""

from django.conf import settings

from inventory.models import StockLevel
from inventory.selectors import stock_ledger_discrepancies
from orders.models import FINAL_STATUSES, Order
from orders.selectors import stock_discrepancies
from payments.models import Payment
from webhooks.models import Delivery, Event

PAID = ("confirmed", "fulfilled")


def _provider(world) -> dict[str, str | None]:
    """Each idempotency key's charge as the payment service holds it (None: no charge)."""
    return {key: row["status"] for key, row in world.sims.payments.stats()["by_key"].items()}


def _unwanted_captures(world, provider: dict[str, str | None]) -> list[str]:
    """Captures kept by no paid order: a payment that is not its paid order's current one."""
    found = []
    for payment in Payment.objects.select_related("order"):
        if provider.get(payment.idempotency_key) != "captured":
            continue
        order = payment.order
        if order.payment_id != payment.pk or order.status not in PAID:
            found.append(
                f"payment {payment.pk} of order {order.pk} ({order.status}) is captured at the "
                "provider and not refunded"
            )
    return found


def settled(world) -> bool:
    """Every order ended, no capture left unrefunded, every event delivered."""
    orders = Order.objects.filter(pk__in=world.run.order_ids)
    if orders.exclude(status__in=FINAL_STATUSES).exists():
        return False
    if _unwanted_captures(world, _provider(world)):
        return False
    return not world.plan.webhooks or not (
        Event.objects.filter(dispatched_at__isnull=True).exists()
        or Delivery.objects.exclude(status="delivered").exists()
    )


def violations(world) -> list[str]:
    run = world.run
    found: list[str] = []
    orders = Order.objects.filter(pk__in=run.order_ids).select_related("payment")
    provider = _provider(world)

    # no oversell, and the stock is exactly what the orders hold, its ledger adding up
    for level in StockLevel.objects.filter(available__lt=0):
        found.append(f"product {level.product_id} oversold: available {level.available}")
    for entry in stock_discrepancies():
        found += [f"product {entry.product_id}: {problem}" for problem in entry.problems]
    found += stock_ledger_discrepancies()

    # money: every capture is a paid order's, or was refunded; one capture per order at most;
    # no order failed on its payment while the provider captured it
    found += _unwanted_captures(world, provider)
    captures: dict[int, int] = {}
    for payment in Payment.objects.filter(order__id__in=run.order_ids).select_related("order"):
        if provider.get(payment.idempotency_key) == "captured":
            captures[payment.order.pk] = captures.get(payment.order.pk, 0) + 1
    found += [f"order {pk} charged {n} times" for pk, n in captures.items() if n > 1]
    for order in orders.filter(failure_reason__in=["payment_declined", "payment_error"]):
        if provider.get(order.payment.idempotency_key) in ("captured", "refunded"):
            found.append(
                f"order {order.pk} failed {order.failure_reason} although the provider "
                "captured its payment"
            )

    # nothing shipped unpaid or cancelled
    shipped = {str(s.get("order_id")) for s in world.sims.warehouse.shipments()["results"]}
    for order in orders.filter(uid__in=[u for u in shipped if len(u) == 36]):
        if order.status != "fulfilled" or order.payment.status != "captured":
            found.append(
                f"order {order.pk} shipped while {order.status}, its payment {order.payment.status}"
            )

    # every order ended, every event delivered (the drain had the time to)
    if not run.drained:
        open_orders = orders.exclude(status__in=FINAL_STATUSES)
        found += [
            f"order {o.pk} still {o.status} after the drain (ready_at {o.ready_at}, "
            f"claimed_until {o.claimed_until}, payment {o.payment.status}, "
            f"tries {o.payment.tries})"
            for o in open_orders
        ]
        if world.plan.webhooks:
            undelivered = Delivery.objects.exclude(status="delivered").count()
            undispatched = Event.objects.filter(dispatched_at__isnull=True).count()
            if undelivered or undispatched:
                found.append(
                    f"webhooks: {undispatched} event(s) not dispatched, {undelivered} "
                    "delivery(ies) not delivered after the drain"
                )
        if not found:
            found.append("the drain did not settle (captures left to refund?)")

    # bounds: no order over its retry budgets
    budgets = {
        "tries": settings.ORDER_PAYMENT_RETRY_MAX,
        "stock_attempts": settings.ORDER_STOCK_RETRY_MAX + 1,
        "ship_attempts": settings.ORDER_SHIP_RETRY_MAX + 1,
    }
    for payment in Payment.objects.filter(order__id__in=run.order_ids, tries__gt=budgets["tries"]):
        found.append(
            f"payment {payment.pk} tried {payment.tries} times (budget {budgets['tries']})"
        )
    for order in orders:
        for counter in ("stock_attempts", "ship_attempts"):
            if getattr(order, counter) > budgets[counter]:
                found.append(
                    f"order {order.pk}: {counter} {getattr(order, counter)} "
                    f"(budget {budgets[counter]})"
                )

    # and no batch held up by one order, or by a provider for long; no order pushed back in
    # the queue; no request held by a hung Redis; no 5xx
    found += [f"a task failed: {error}" for error in run.task_errors]
    found += run.stalls
    found += run.pushed_back
    found += run.slow_batches
    from tests.explore.world import REQUEST_BOUND_SECONDS

    for status, seconds, hung in run.answers:
        if status >= 500:
            found.append(f"an order's creation answered {status}")
        elif hung and seconds > REQUEST_BOUND_SECONDS:
            found.append(f"an order's creation took {seconds:.1f}s while Redis hung")
    return found
