from django.db.models import OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from catalog.models import Product
from catalog.selectors import product_list
from inventory.models import StockLevel, StockMovement

BUCKETS = ("on_hand", "reserved", "committed")


def product_list_with_stock() -> QuerySet[Product]:
    """Products annotated with `available` (0 when no stock row exists yet)."""
    return product_list().annotate(available=Coalesce("stock__available", Value(0)))


def stock_level_list() -> QuerySet[StockLevel]:
    return StockLevel.objects.select_related("product")


def stock_low(*, threshold: int) -> QuerySet[StockLevel]:
    """Stock levels of active products with `available` at or below `threshold`, the
    lowest first."""
    return (
        StockLevel.objects.filter(available__lte=threshold, product__is_active=True)
        .select_related("product")
        .order_by("available", "product_id")
    )


def stock_movements(*, product_id: int) -> QuerySet[StockMovement]:
    """A product's ledger, the newest first."""
    return (
        StockMovement.objects.filter(product_id=product_id)
        .select_related("actor", "sync_run")
        .order_by("-id")
    )


def stock_ledger_discrepancies() -> list[str]:
    """Products whose ledger does not explain their levels: the movements' changes must add
    up to each bucket, and the newest movement's levels after must be the levels. An empty
    list means every level is accounted for."""
    sums = {
        row["product_id"]: row
        for row in StockMovement.objects.order_by()
        .values("product_id")
        .annotate(**{b: Sum(f"{b}_change") for b in BUCKETS})
    }
    newest = StockMovement.objects.filter(product_id=OuterRef("product_id")).order_by("-id")
    levels = StockLevel.objects.annotate(
        **{f"last_{b}": Subquery(newest.values(f"{b}_after")[:1]) for b in BUCKETS}
    ).values("product_id", *BUCKETS, *(f"last_{b}" for b in BUCKETS))
    found = []
    for level in levels.iterator(chunk_size=5000):
        added = sums.pop(level["product_id"], {})
        for bucket in BUCKETS:
            total, last = added.get(bucket) or 0, level[f"last_{bucket}"]
            if total != level[bucket]:
                found.append(
                    f"product {level['product_id']}: its movements add up to {bucket} "
                    f"{total}, the level is {level[bucket]}"
                )
            elif last is not None and last != level[bucket]:
                found.append(
                    f"product {level['product_id']}: its newest movement leaves {bucket} at "
                    f"{last}, the level is {level[bucket]}"
                )
    for product_id in sums:  # cannot happen while movements cascade with their product
        found.append(f"product {product_id}: movements but no stock level")
    return found
