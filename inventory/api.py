"""The products API with stock: catalog's endpoints plus `available` (inventory may depend on
catalog, not the other way round, so stock is added here)."""

import django_filters
from rest_framework import serializers

from catalog.api import ProductSerializer, ProductViewSet
from catalog.filters import ProductFilter
from catalog.models import Product
from inventory.models import StockLevel
from inventory.selectors import product_list_with_stock


class ProductWithStockSerializer(ProductSerializer):
    available = serializers.SerializerMethodField(
        help_text="Units that can be ordered now: on hand minus reserved minus committed."
    )

    class Meta(ProductSerializer.Meta):
        fields = [*ProductSerializer.Meta.fields, "available"]

    def get_available(self, product: Product) -> int:
        if hasattr(product, "available"):
            return product.available
        level = StockLevel.objects.filter(product=product).values_list("available", flat=True)
        return next(iter(level), 0)


class ProductWithStockFilter(ProductFilter):
    in_stock = django_filters.BooleanFilter(
        method="filter_in_stock", help_text="Only products with available > 0."
    )

    class Meta(ProductFilter.Meta):
        fields = [*ProductFilter.Meta.fields, "in_stock"]

    def filter_in_stock(self, queryset, name, value):
        return queryset.filter(available__gt=0) if value else queryset.filter(available__lte=0)


class ProductWithStockViewSet(ProductViewSet):
    serializer_class = ProductWithStockSerializer
    filterset_class = ProductWithStockFilter
    ordering_fields = [*ProductViewSet.ordering_fields, "available"]

    def get_queryset(self):
        return product_list_with_stock()
