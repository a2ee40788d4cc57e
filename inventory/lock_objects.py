"""Every row lock on stock goes through here: `select_for_update()` in ascending product id
order, always, so two transactions locking overlapping products can never deadlock."""

from collections.abc import Iterable

from django.db.models import QuerySet

from inventory.models import StockLevel


def stock_levels_for_update(product_ids: Iterable[int]) -> QuerySet[StockLevel]:
    """Must be evaluated inside a transaction; locks in ascending product id order."""
    return (
        StockLevel.objects.select_for_update(of=("self",), no_key=True)
        .filter(product_id__in=sorted(set(product_ids)))
        .order_by("product_id")
    )
