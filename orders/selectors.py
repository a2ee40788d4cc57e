from django.db.models import Prefetch, QuerySet

from orders.models import Order, OrderLine, OrderLog


def order_list(*, user) -> QuerySet[Order]:
    """Orders a user may see: their own; staff see every order."""
    orders = Order.objects.select_related("payment", "customer").prefetch_related(
        Prefetch("lines", queryset=OrderLine.objects.select_related("product"))
    )
    return orders if user.is_staff else orders.filter(customer=user)


def order_logs(*, order: Order) -> QuerySet[OrderLog]:
    return OrderLog.objects.filter(order=order).order_by("id")
