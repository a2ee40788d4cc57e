from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Prefetch, Q, QuerySet, Sum, prefetch_related_objects

from inventory.models import StockLevel
from orders.models import FailureReason, Order, OrderLine, OrderLog, OrderStatus

# An order's lines with their products: what the API shows and the workflow works from.
LINES_WITH_PRODUCTS = Prefetch("lines", queryset=OrderLine.objects.select_related("product"))


def orders_shown() -> QuerySet[Order]:
    """Every order, with what the API shows of it."""
    return Order.objects.select_related("payment", "customer").prefetch_related(LINES_WITH_PRODUCTS)


def order_list(*, user) -> QuerySet[Order]:
    """Orders a user may see: their own; staff see every order."""
    orders = orders_shown()
    return orders if user.is_staff else orders.filter(customer=user)


def order_lines(order: Order) -> list[OrderLine]:
    """The order's lines with their products, read once per Order instance (none when the
    instance was loaded or created with them)."""
    prefetch_related_objects([order], LINES_WITH_PRODUCTS)
    return list(order.lines.all())


def order_logs(*, order: Order) -> QuerySet[OrderLog]:
    return OrderLog.objects.filter(order=order).select_related("actor").order_by("id")


@dataclass(frozen=True)
class StockDiscrepancy:
    product_id: int
    reserved: int
    held_by_reserved_orders: int
    committed: int
    held_by_confirmed_orders: int
    on_hand: int

    @property
    def problems(self) -> list[str]:
        found = []
        if self.reserved != self.held_by_reserved_orders:
            found.append(
                f"reserved {self.reserved} != {self.held_by_reserved_orders} held by "
                "reserved orders"
            )
        if self.committed != self.held_by_confirmed_orders:
            found.append(
                f"committed {self.committed} != {self.held_by_confirmed_orders} held "
                "by confirmed orders"
            )
        for name in ("reserved", "committed", "on_hand"):
            if getattr(self, name) < 0:
                found.append(f"{name} is negative ({getattr(self, name)})")
        return found


def stock_discrepancies() -> list[StockDiscrepancy]:
    """Products whose stock buckets disagree with the orders holding them, or are negative.
    An empty list means the stock ledger is consistent."""
    held = (
        OrderLine.objects.filter(order__status__in=[OrderStatus.RESERVED, OrderStatus.CONFIRMED])
        .values("product_id")
        .annotate(
            reserved=Sum("quantity", filter=Q(order__status=OrderStatus.RESERVED)),
            confirmed=Sum("quantity", filter=Q(order__status=OrderStatus.CONFIRMED)),
        )
    )
    held_by = {row["product_id"]: row for row in held}
    found = []
    levels = StockLevel.objects.values_list("product_id", "reserved", "committed", "on_hand")
    for product_id, reserved, committed, on_hand in levels.iterator(chunk_size=5000):
        row = held_by.pop(product_id, {})
        entry = StockDiscrepancy(
            product_id,
            reserved,
            row.get("reserved") or 0,
            committed,
            row.get("confirmed") or 0,
            on_hand,
        )
        if entry.problems:
            found.append(entry)
    for product_id, row in held_by.items():  # orders holding stock of a product with no row
        found.append(
            StockDiscrepancy(product_id, 0, row["reserved"] or 0, 0, row["confirmed"] or 0, 0)
        )
    return found


@dataclass(frozen=True)
class OrderCountsSince:
    since: datetime
    by_status: dict[str, int]
    by_failure_reason: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


def order_counts_since(*, since: datetime) -> OrderCountsSince:
    """Orders created since `since`, counted by their current status and, for the failed
    ones, by failure reason (every status and reason present, zero or not)."""
    # order.created_at is indexed, so this reads only recent rows however many orders there are.
    recent = Order.objects.filter(created_at__gte=since).order_by()
    by_status = dict.fromkeys(OrderStatus.values, 0)
    by_status.update(recent.values_list("status").annotate(n=Count("id")))
    by_reason = dict.fromkeys(FailureReason.values, 0)
    by_reason.update(
        recent.filter(status=OrderStatus.FAILED)
        .values_list("failure_reason")
        .annotate(n=Count("id"))
    )
    return OrderCountsSince(since=since, by_status=by_status, by_failure_reason=by_reason)
