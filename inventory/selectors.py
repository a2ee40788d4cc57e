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
