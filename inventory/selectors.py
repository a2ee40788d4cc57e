from django.db.models import QuerySet, Value
from django.db.models.functions import Coalesce

from catalog.models import Product
from catalog.selectors import product_list
from inventory.models import StockLevel


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
