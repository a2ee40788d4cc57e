"""The invariants of the stock ledger and of payments, checked from the outside in."""

from dataclasses import dataclass, field

from django.db.models import Count

from inventory.models import StockLevel
from orders.models import Order, OrderStatus
from orders.selectors import stock_discrepancies
from payments.gateway import PaymentGatewayUnavailable, get_gateway
from payments.models import Payment, PaymentStatus

PAID = (OrderStatus.CONFIRMED, OrderStatus.FULFILLED)
UNPAID_ENDS = (OrderStatus.FAILED, OrderStatus.CANCELLED)


@dataclass
class AuditResult:
    products: int = 0
    orders: int = 0
    provider_checks: int = 0
    violations: list[str] = field(default_factory=list)


def audit(*, with_provider: bool = False) -> AuditResult:
    """Read-only. With `with_provider`, each paid, failed or cancelled order that ever tried
    to charge is also checked against the payment service's record of its key."""
    result = AuditResult(products=StockLevel.objects.count(), orders=Order.objects.count())
    for entry in stock_discrepancies():
        result.violations.extend(f"product {entry.product_id}: {p}" for p in entry.problems)

    paid_not_captured = Order.objects.filter(status__in=PAID).exclude(
        payment__status=PaymentStatus.CAPTURED
    )
    for order in paid_not_captured.select_related("payment"):
        result.violations.append(
            f"order {order.pk} is {order.status} but its payment is {order.payment.status}"
        )
    doubles = (
        Payment.objects.filter(status=PaymentStatus.CAPTURED)
        .values("reference")
        .annotate(captures=Count("id"))
        .filter(captures__gt=1)
    )
    for row in doubles:
        result.violations.append(f"{row['reference']} has {row['captures']} captured charges")
    kept = Order.objects.filter(
        status__in=UNPAID_ENDS,
        payment__status__in=[PaymentStatus.CAPTURED, PaymentStatus.REFUND_IN_DOUBT],
    ).select_related("payment")
    for order in kept:
        result.violations.append(
            f"order {order.pk} is {order.status} and keeps a capture"
            + (" (its refund unanswered)" if order.payment.status != PaymentStatus.CAPTURED else "")
        )

    if with_provider:
        gateway = get_gateway()
        checked = Order.objects.filter(
            status__in=[*PAID, *UNPAID_ENDS], payment__attempts__gt=0
        ).select_related("payment")
        for order in checked.iterator(chunk_size=500):
            try:
                charge = gateway.get_charge(idempotency_key=order.payment.idempotency_key)
            except PaymentGatewayUnavailable as exc:
                result.violations.append(f"order {order.pk}: payment service unreachable ({exc})")
                continue
            result.provider_checks += 1
            status = charge.status if charge else None
            if order.status in PAID and status != "captured":
                result.violations.append(
                    f"order {order.pk} is {order.status} but the provider "
                    f"has {status or 'no charge'}"
                )
            if order.status in UNPAID_ENDS and status == "captured":
                result.violations.append(
                    f"order {order.pk} is {order.status} but the provider "
                    "holds an unrefunded capture"
                )
    return result
