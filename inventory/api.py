"""The products API with stock: catalog's endpoints plus `available` (inventory may depend on
catalog, not the other way round, so stock is added here)."""

import django_filters
from django.http import Http404
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import mixins, serializers, viewsets
from rest_framework.generics import get_object_or_404
from rest_framework.permissions import IsAdminUser

from catalog.api import ProductSerializer, ProductViewSet
from catalog.filters import ProductFilter
from catalog.models import Product
from core.api.filters import IdFilter, StrictBooleanFilter, UtcIsoDateTimeFilter, past_int64
from core.api.lookups import Int64LookupMixin
from inventory.models import MovementReason, StockLevel, StockMovement
from inventory.selectors import product_list_with_stock, stock_level_list, stock_movements


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


def filter_in_stock(queryset, name, value):
    """`in_stock`: available > 0 when true, available <= 0 when false."""
    return queryset.filter(available__gt=0) if value else queryset.filter(available__lte=0)


class ProductWithStockFilter(ProductFilter):
    in_stock = StrictBooleanFilter(
        method=filter_in_stock, help_text="Only products with available > 0."
    )

    class Meta(ProductFilter.Meta):
        fields = [*ProductFilter.Meta.fields, "in_stock"]


class ProductWithStockViewSet(ProductViewSet):
    serializer_class = ProductWithStockSerializer
    filterset_class = ProductWithStockFilter
    ordering_fields = [*ProductViewSet.ordering_fields, "available"]

    def get_queryset(self):
        return product_list_with_stock()


class StockLevelSerializer(serializers.ModelSerializer):
    product_id = serializers.IntegerField(read_only=True)
    sku = serializers.CharField(source="product.sku", read_only=True)

    class Meta:
        model = StockLevel
        fields = [
            "product_id",
            "sku",
            "on_hand",
            "version",
            "reserved",
            "committed",
            "available",
            "updated_at",
        ]
        read_only_fields = fields


class StockLevelFilter(django_filters.FilterSet):
    sku = django_filters.CharFilter(field_name="product__sku", help_text="Exact SKU.")
    in_stock = StrictBooleanFilter(
        method=filter_in_stock, help_text="Only rows with available > 0 (false: <= 0)."
    )

    class Meta:
        model = StockLevel
        fields = ["sku", "in_stock"]


class StockMovementSerializer(serializers.ModelSerializer):
    available_after = serializers.IntegerField(read_only=True)
    actor = serializers.CharField(
        source="actor.username",
        default=None,
        read_only=True,
        allow_null=True,
        help_text="The person who made the change; null when the system did.",
    )

    class Meta:
        model = StockMovement
        fields = [
            "id",
            "created_at",
            "reason",
            "on_hand_change",
            "reserved_change",
            "committed_change",
            "on_hand_after",
            "reserved_after",
            "committed_after",
            "available_after",
            "order_id",
            "sync_run_id",
            "actor",
            "note",
        ]
        read_only_fields = fields


class StockMovementFilter(django_filters.FilterSet):
    reason = django_filters.MultipleChoiceFilter(choices=MovementReason.choices)
    order_id = IdFilter(help_text="Only the movements of this order.")
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = StockMovement
        fields = ["reason", "order_id", "created_after", "created_before"]


class StockLevelViewSet(
    Int64LookupMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Stock levels for operators (staff only): the warehouse's on_hand and version, and the
    units our orders hold. Looked up by product id."""

    serializer_class = StockLevelSerializer
    permission_classes = [IsAdminUser]
    filterset_class = StockLevelFilter
    ordering_fields = ["product_id", "on_hand", "reserved", "committed", "available"]
    ordering = ["product_id"]
    lookup_field = "product_id"
    lookup_url_kwarg = "product_id"

    def get_queryset(self):
        return stock_level_list()


class StockMovementViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """A product's stock ledger (staff only), the newest first: every change of on_hand,
    reserved or committed, why (`reason`), what caused it (`order_id`, `sync_run_id`), who
    (`actor`) and the levels right after it. Filter by reason, order and time."""

    serializer_class = StockMovementSerializer
    permission_classes = [IsAdminUser]
    filterset_class = StockMovementFilter
    filter_backends = [DjangoFilterBackend]  # one order: the newest first

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema's: no product
            return StockMovement.objects.none()
        product_id = self.kwargs["product_id"]
        if past_int64(product_id):
            raise Http404
        level = get_object_or_404(StockLevel.objects.all(), product_id=product_id)
        return stock_movements(product_id=level.product_id)


def stock_as_shown(product_ids: list[int]) -> dict[int, dict]:
    """Stock levels as GET /api/stock/{product_id}/ shows them (webhook bodies)."""
    levels = list(stock_level_list().filter(product_id__in=product_ids))
    shown = StockLevelSerializer(levels, many=True).data
    return {level.product_id: data for level, data in zip(levels, shown, strict=True)}
