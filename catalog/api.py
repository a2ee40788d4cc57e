from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets

from catalog import selectors, services
from catalog.filters import ProductFilter
from catalog.models import Category, Product
from core.api.lookups import Int64LookupMixin
from core.api.permissions import IsStaffOrReadOnly
from core.api.schema import error_response


class CategorySerializer(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ["id", "name"]


class ProductSerializer(serializers.ModelSerializer):
    price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0)
    categories = serializers.PrimaryKeyRelatedField(
        many=True,
        queryset=Category.objects.all(),
        required=False,
        help_text="Ids of the categories this product belongs to.",
    )

    class Meta:
        model = Product
        fields = [
            "id",
            "sku",
            "name",
            "description",
            "price",
            "is_active",
            "categories",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


@extend_schema_view(
    destroy=extend_schema(
        responses={
            204: None,
            409: error_response(
                "Orders reference the product (`product_in_use`): deactivate it instead."
            ),
        }
    )
)
class ProductViewSet(Int64LookupMixin, viewsets.ModelViewSet):
    """Products: anyone reads, staff write. Filter by `category`, `is_active`, `search`."""

    serializer_class = ProductSerializer
    permission_classes = [IsStaffOrReadOnly]
    filterset_class = ProductFilter
    ordering_fields = ["id", "sku", "name", "price", "created_at"]
    ordering = ["id"]

    def get_queryset(self):
        return selectors.product_list()

    def perform_create(self, serializer):
        serializer.instance = services.product_create(**serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.product_update(
            product=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.product_delete(product=instance)


class CategoryViewSet(
    Int64LookupMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = CategorySerializer
    permission_classes = [IsStaffOrReadOnly]
    ordering_fields = ["id", "name"]
    ordering = ["name"]

    def get_queryset(self):
        return selectors.category_list()

    def perform_create(self, serializer):
        serializer.instance = services.category_create(**serializer.validated_data)
