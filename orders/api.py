import re
from typing import TYPE_CHECKING

from django.conf import settings
from django.http import HttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings

from core.api.filters import UtcIsoDateTimeFilter
from core.api.lookups import Int64LookupMixin
from core.api.schema import error_response
from core.api.serializers import BuiltOnceModelSerializer
from orders import idempotency, interventions, selectors, services
from orders.models import FailureReason, Order, OrderLine, OrderLog, OrderStatus
from orders.throttling import OrderCreateThrottle

if TYPE_CHECKING:
    from django.contrib.auth.models import User


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
    """Errors in `details.items`, keyed by what they are about: a line's by its index
    (`details.items["1"].quantity`, only the lines at fault, as DRF keys a list's errors), the
    list's as a whole (missing, empty, too long) by `non_field_errors`."""

    items = OrderItemInSerializer(many=True, allow_empty=False)

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors = exc.detail.get("items") if isinstance(exc.detail, dict) else None
            if isinstance(errors, list):  # about the list itself
                exc.detail["items"] = {api_settings.NON_FIELD_ERRORS_KEY: errors}
            raise

    def validate_items(self, items):
        if len(items) > settings.ORDER_MAX_LINES:
            raise serializers.ValidationError(
                f"At most {settings.ORDER_MAX_LINES} lines per order."
            )
        seen = set()
        repeated = {}
        for n, item in enumerate(items):
            if item["product_id"] in seen:
                repeated[n] = {
                    "product_id": ["Each product may appear once; this one is repeated."]
                }
            seen.add(item["product_id"])
        if repeated:
            raise serializers.ValidationError(repeated)
        return [services.OrderItem(**item) for item in items]


class OrderLineSerializer(BuiltOnceModelSerializer):
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


class OrderSerializer(BuiltOnceModelSerializer):
    failure_reason = serializers.ChoiceField(
        choices=FailureReason.choices,
        allow_blank=True,
        read_only=True,
        help_text="Why a failed order failed; empty otherwise.",
    )
    items = OrderLineSerializer(source="lines", many=True, read_only=True)
    payment = PaymentSummarySerializer(read_only=True)
    customer = serializers.CharField(source="customer.username", read_only=True)
    cancel_requested_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="Set while a confirmed order's cancellation is under way: it will not ship, "
        "and becomes cancelled once the warehouse and the payment service have answered.",
    )

    class Meta:
        model = Order
        fields = [
            "id",
            "uid",
            "customer",
            "status",
            "failure_reason",
            "cancel_requested_at",
            "total",
            "currency",
            "items",
            "payment",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class OrderLogSerializer(BuiltOnceModelSerializer):
    actor: "serializers.SlugRelatedField[User]" = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="Who did it (a customer or an operator); null when the system did.",
    )

    class Meta:
        model = OrderLog
        fields = [
            "id",
            "created_at",
            "from_status",
            "to_status",
            "event",
            "message",
            "data",
            "actor",
        ]
        read_only_fields = fields


class OrderFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=OrderStatus.choices)
    failure_reason = filters.MultipleChoiceFilter(choices=FailureReason.choices)
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Order
        fields = ["status", "failure_reason", "created_after", "created_before"]


KEY_PATTERN = re.compile(rf"[!-~]{{1,{idempotency.KEY_MAX_LENGTH}}}")

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    pattern=f"^{KEY_PATTERN.pattern}$",
    description="Any unique value per order you mean to place (a UUID, say), printable ASCII, "
    "at most 255 characters; kept 24 hours per user. Retrying with it is safe: the same body "
    "replays the first accepted answer, another body is refused with 422, and a retry while "
    "the first request is still being processed gets 409.",
)
LOCATION = OpenApiParameter(
    "Location",
    OpenApiTypes.URI,
    location=OpenApiParameter.HEADER,
    required=True,
    response=[202],
    description="The order's URL, to poll.",
)
REPLAYED = OpenApiParameter(
    "Idempotent-Replayed",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    enum=["true"],
    response=[202],
    description="Present on an answer replayed for a repeated Idempotency-Key.",
)


def idempotency_key_of(request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not KEY_PATTERN.fullmatch(key):
        raise serializers.ValidationError(
            {
                "Idempotency-Key": [
                    "Must be 1 to 255 printable ASCII characters without spaces, e.g. a UUID."
                ]
            }
        )
    return key


def to_response(answer: idempotency.Answer, *, replayed: bool = False) -> HttpResponse:
    """The answer byte for byte as stored, so a replay is identical to the first answer."""
    response = HttpResponse(
        answer.body, status=answer.status, content_type="application/json", headers=answer.headers
    )
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response


class OrderViewSet(
    Int64LookupMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Orders of the caller (staff: all). Others' orders answer 404."""

    queryset = Order.objects.none()  # for the schema generator; requests use get_queryset
    serializer_class = OrderSerializer
    filterset_class = OrderFilter
    ordering_fields = ["id", "created_at", "updated_at", "total"]
    ordering = ["-id"]

    def get_queryset(self):
        return selectors.order_list(user=self.request.user)

    def get_throttles(self):
        return [OrderCreateThrottle()] if self.action == "create" else super().get_throttles()

    @extend_schema(
        request=OrderCreateSerializer,
        parameters=[IDEMPOTENCY_KEY, LOCATION, REPLAYED],
        responses={
            202: OrderSerializer,
            409: error_response(
                "A request with this Idempotency-Key is still being processed "
                "(`idempotency_key_in_use`)."
            ),
            422: error_response(
                "This Idempotency-Key was used with a different body (`idempotency_key_reused`)."
            ),
            429: error_response(
                "Too many orders (`throttled`); `details.retry_after_seconds` and the "
                "`Retry-After` header say when to try again."
            ),
        },
    )
    def create(self, request, *args, **kwargs):
        """Accept an order; it is processed asynchronously. Answers 202 with the order and a
        Location header to poll. With an `Idempotency-Key`, a retry gets the first answer."""
        key = idempotency_key_of(request)
        if key is None:
            answer, _ = self._accept(request)
            return to_response(answer)
        fingerprint = idempotency.request_fingerprint(
            method="POST", operation="orders.create", body=request.data
        )
        claimed = idempotency.idempotency_claim(user=request.user, key=key, fingerprint=fingerprint)
        if isinstance(claimed, idempotency.Answer):
            return to_response(claimed, replayed=True)
        answer = idempotency.idempotent_run(claim=claimed, work=lambda: self._accept(request))
        return to_response(answer)

    def _accept(self, request) -> tuple[idempotency.Answer, Order]:
        incoming = OrderCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        order = services.order_create(customer=request.user, items=incoming.validated_data["items"])
        body = JSONRenderer().render(OrderSerializer(order).data).decode()
        location = request.build_absolute_uri(f"/api/orders/{order.pk}/")
        return idempotency.Answer(status.HTTP_202_ACCEPTED, body, {"Location": location}), order

    @extend_schema(
        operation_id="orders_cancel",
        request=None,
        responses={
            200: OrderSerializer,
            409: error_response(
                "Shipped or failed orders cannot be cancelled (`order_not_cancellable`), also "
                "when the warehouse answers that it has just shipped it."
            ),
            502: error_response(
                "The payment service refused the refund (`refund_refused`), or the warehouse "
                "refused to cancel the shipment (`warehouse_refused`); the order will not ship "
                "and an operator settles it."
            ),
            503: error_response(
                "The warehouse (`warehouse_unavailable`) or the payment service "
                "(`payment_service_unavailable`) did not answer: the order is not cancelled "
                "yet, will not ship, and its cancellation finishes by itself. Safe to retry."
            ),
        },
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def cancel(self, request, pk=None):
        """Cancel an order: pending or reserved -> stock released; confirmed -> the warehouse
        is told not to ship it, the payment is refunded, then the stock released. Answers the
        cancelled order; cancelling again is a no-op. A fulfilled (shipped) or failed order
        answers 409."""
        order = interventions.order_cancel(order=self.get_object(), actor=request.user, via="api")
        return Response(OrderSerializer(self.get_queryset().get(pk=order.pk)).data)

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


def orders_as_shown(order_ids: list[int]) -> dict[int, dict]:
    """Orders as GET /api/orders/{id}/ shows them, by id, read in one go (webhook bodies)."""
    orders = list(selectors.orders_shown().filter(pk__in=order_ids))
    shown = OrderSerializer(orders, many=True).data  # its fields built once for all
    return {order.pk: data for order, data in zip(orders, shown, strict=True)}
