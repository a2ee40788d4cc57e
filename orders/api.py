from django.conf import settings
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from orders import selectors, services
from orders.models import FailureReason, Order, OrderLine, OrderLog, OrderStatus


class StrictIntegerField(serializers.IntegerField):
    """Only JSON integers: no strings, floats or booleans quietly coerced."""

    default_error_messages = {"invalid": "A JSON integer is required."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class OrderItemInSerializer(serializers.Serializer):
    product_id = StrictIntegerField(min_value=1, max_value=2**63 - 1)
    quantity = StrictIntegerField(min_value=1, help_text="At most ORDER_MAX_QUANTITY.")

    def validate_quantity(self, quantity: int) -> int:
        if quantity > settings.ORDER_MAX_QUANTITY:
            raise serializers.ValidationError(
                f"Ensure this value is less than or equal to {settings.ORDER_MAX_QUANTITY}."
            )
        return quantity


class OrderCreateSerializer(serializers.Serializer):
    items = OrderItemInSerializer(many=True, allow_empty=False)

    def validate_items(self, items):
        if len(items) > settings.ORDER_MAX_LINES:
            raise serializers.ValidationError(
                f"At most {settings.ORDER_MAX_LINES} lines per order."
            )
        ids = [item["product_id"] for item in items]
        duplicates = sorted({pid for pid in ids if ids.count(pid) > 1})
        if duplicates:
            raise serializers.ValidationError(
                f"Each product may appear once; repeated: {', '.join(map(str, duplicates))}."
            )
        return [services.OrderItem(**item) for item in items]


class OrderLineSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="product.sku", read_only=True)
    line_total = serializers.SerializerMethodField()

    class Meta:
        model = OrderLine
        fields = ["product_id", "sku", "quantity", "unit_price", "line_total"]

    def get_line_total(self, line: OrderLine) -> str:
        return f"{line.unit_price * line.quantity:.2f}"


class PaymentSummarySerializer(serializers.Serializer):
    status = serializers.CharField()
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField()
    provider_reference = serializers.CharField()
    attempts = serializers.IntegerField()


class OrderSerializer(serializers.ModelSerializer):
    items = OrderLineSerializer(source="lines", many=True, read_only=True)
    payment = PaymentSummarySerializer(read_only=True)
    customer = serializers.CharField(source="customer.username", read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "uid",
            "customer",
            "status",
            "failure_reason",
            "total",
            "currency",
            "items",
            "payment",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class OrderLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = OrderLog
        fields = ["id", "created_at", "from_status", "to_status", "event", "message", "data"]
        read_only_fields = fields


class OrderFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=OrderStatus.choices)
    failure_reason = filters.MultipleChoiceFilter(choices=FailureReason.choices)
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Order
        fields = ["status", "failure_reason", "created_after", "created_before"]


class OrderViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Orders of the caller (staff: all). Others' orders answer 404."""

    serializer_class = OrderSerializer
    filterset_class = OrderFilter
    ordering_fields = ["id", "created_at", "updated_at", "total"]
    ordering = ["-id"]

    def get_queryset(self):
        return selectors.order_list(user=self.request.user)

    @extend_schema(
        request=OrderCreateSerializer,
        responses={202: OrderSerializer, 400: OpenApiResponse(description="Invalid input.")},
    )
    def create(self, request, *args, **kwargs):
        """Accept an order; it is processed asynchronously. Answers 202 with the order and a
        Location header to poll."""
        incoming = OrderCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        order = services.order_create(customer=request.user, items=incoming.validated_data["items"])
        order = self.get_queryset().get(pk=order.pk)
        location = request.build_absolute_uri(f"/api/orders/{order.pk}/")
        return Response(
            OrderSerializer(order).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": location},
        )

    @extend_schema(responses=OrderLogSerializer(many=True))
    @action(
        detail=True,
        methods=["get"],
        serializer_class=OrderLogSerializer,
        filterset_class=None,
        ordering=None,
    )
    def logs(self, request, pk=None):
        """The order's history (the original spec's Order_Logs), oldest first."""
        order = self.get_object()
        page = self.paginate_queryset(selectors.order_logs(order=order))
        return self.get_paginated_response(OrderLogSerializer(page, many=True).data)
