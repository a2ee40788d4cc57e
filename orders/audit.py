"""The invariants of stock (the buckets against the orders holding them, and the movements
against the levels), of payments and of shipments, checked from the outside in
(manage.py audit_stock)."""

from dataclasses import dataclass, field

from django.db.models import Count, F, Q

from inventory.fulfilment import WarehouseRejected, WarehouseUnavailable, shipped_order_refs
from inventory.models import StockLevel
from inventory.selectors import stock_ledger_discrepancies
from orders.models import Order, OrderStatus
from orders.selectors import stock_discrepancies
from payments.models import Payment, PaymentStatus
from payments.services import PaymentInDoubt, payment_at_provider

PAID = (OrderStatus.CONFIRMED, OrderStatus.FULFILLED)
UNPAID_ENDS = (OrderStatus.FAILED, OrderStatus.CANCELLED)
P = PaymentStatus


@dataclass
class AuditResult:
    products: int = 0
    orders: int = 0
    provider_checks: int = 0
    warehouse_shipments: int = 0
    # Charges whose outcome is not known yet (the reconciler keeps asking): not a violation
    # by itself; with_provider tells whether one holds a capture it should not.
    in_doubt: int = 0
    violations: list[str] = field(default_factory=list)


def _wanted() -> Q:
    """The payment an order keeps: the current one of a paid (or still open) order."""
    return Q(order__payment=F("pk")) & ~Q(order__status__in=UNPAID_ENDS)


def audit(*, with_provider: bool = False) -> AuditResult:
    """Read-only. With `with_provider`, every payment that was ever charged is checked against
    the payment service's record of its key, and every shipment the warehouse holds against
    the order it is for."""
    result = AuditResult(products=StockLevel.objects.count(), orders=Order.objects.count())
    for entry in stock_discrepancies():
        result.violations.extend(f"product {entry.product_id}: {p}" for p in entry.problems)
    result.violations += stock_ledger_discrepancies()
    result.violations += _payment_violations()
    result.in_doubt = Payment.objects.filter(status__in=[P.IN_DOUBT, P.REFUND_IN_DOUBT]).count()
    if with_provider:
        result.violations += _provider_violations(result)
        result.violations += _warehouse_violations(result)
    return result


def _payment_violations() -> list[str]:
    found = []
    paid_not_captured = Order.objects.filter(status__in=PAID).exclude(payment__status=P.CAPTURED)
    for order in paid_not_captured.select_related("payment"):
        found.append(f"{order} is {order.status} but its payment is {order.payment.status}")
    doubles = (
        Payment.objects.filter(status=P.CAPTURED)
        .values("order_id")
        .annotate(captures=Count("id"))
        .filter(captures__gt=1)
    )
    for row in doubles:
        found.append(f"order {row['order_id']} has {row['captures']} captured charges")
    kept = Payment.objects.filter(status__in=[P.CAPTURED, P.REFUND_IN_DOUBT]).exclude(_wanted())
    for payment in kept.select_related("order"):
        found.append(
            f"payment {payment.pk} of {payment.order} is not wanted and keeps a capture"
            + (" (its refund unanswered)" if payment.status != P.CAPTURED else "")
        )
    return found


def _provider_violations(result: AuditResult) -> list[str]:
    found = []
    charged = Payment.objects.filter(attempts__gt=0).select_related("order")
    for payment in charged.iterator(chunk_size=500):
        order = payment.order
        try:
            status = payment_at_provider(payment=payment)
        except PaymentInDoubt as exc:
            found.append(f"payment {payment.pk}: payment service unreachable ({exc.message})")
            continue
        result.provider_checks += 1
        wanted = order.payment_id == payment.pk and order.status not in UNPAID_ENDS
        if wanted and order.status in PAID and status != "captured":
            found.append(f"{order} is {order.status} but the provider has {status or 'no charge'}")
        if not wanted and status == "captured":
            reason = "a replaced payment" if order.payment_id != payment.pk else order.status
            found.append(
                f"payment {payment.pk} of {order} ({reason}): the provider holds an unrefunded "
                "capture"
            )
    return found


def _warehouse_violations(result: AuditResult) -> list[str]:
    """Shipments of orders we know must be of fulfilled orders; fulfilled orders must have
    one. (Shipments of orders we do not know are another system's business.)"""
    found = []
    try:
        shipped = set(shipped_order_refs())
    except (WarehouseUnavailable, WarehouseRejected) as exc:
        return [f"warehouse unreachable: {exc}"]
    result.warehouse_shipments = len(shipped)
    for order in Order.objects.filter(uid__in=shipped).exclude(status=OrderStatus.FULFILLED):
        found.append(f"{order} was shipped by the warehouse but is {order.status}")
    fulfilled = Order.objects.filter(status=OrderStatus.FULFILLED).values_list("pk", "uid")
    for pk, uid in fulfilled.iterator(chunk_size=5000):
        if uid not in shipped:
            found.append(f"order {pk} is fulfilled but the warehouse holds no shipment for it")
    return found
