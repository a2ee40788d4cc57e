"""Every row lock on orders goes through here: in ascending id order, always, so two
transactions locking overlapping sets of orders can never deadlock. An order's rows are
locked before any stock rows (inventory/lock_objects.py), never after."""

from collections.abc import Iterable

from orders.models import Order


def orders_for_update(order_ids: Iterable[int]) -> dict[int, tuple[str, int]]:
    """Lock the orders' rows (FOR NO KEY UPDATE: their lines and logs may still be inserted);
    must run inside a transaction. Returns each one's (status, payment id) as locked."""
    return {
        pk: (status, payment_id)
        for pk, status, payment_id in Order.objects.select_for_update(no_key=True)
        .filter(pk__in=sorted(set(order_ids)))
        .order_by("pk")
        .values_list("pk", "status", "payment_id")
    }
