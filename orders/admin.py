from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from orderproj.admin import ReadOnlyAdminMixin, ReadOnlyInline
from orders.models import Order, OrderLine, OrderLog, OrderStatus

STATUS_COLOURS = {
    OrderStatus.PENDING: "#6c757d",
    OrderStatus.RESERVED: "#0d6efd",
    OrderStatus.CONFIRMED: "#198754",
    OrderStatus.FULFILLED: "#0f5132",
    OrderStatus.FAILED: "#dc3545",
    OrderStatus.CANCELLED: "#fd7e14",
}


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = ["product_link", "quantity", "unit_price"]
    readonly_fields = fields

    @admin.display(description="Product")
    def product_link(self, line: OrderLine) -> str:
        url = reverse("admin:catalog_product_change", args=[line.product_id])
        return format_html('<a href="{}">{}</a>', url, line.product)


class OrderLogInline(ReadOnlyInline):
    model = OrderLog
    fields = ["created_at", "from_status", "to_status", "event", "message", "data"]
    readonly_fields = fields
    ordering = ["id"]


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "customer",
        "coloured_status",
        "failure_reason",
        "total",
        "currency",
        "created_at",
        "updated_at",
    ]
    list_filter = ["status", "failure_reason", "created_at"]
    search_fields = ["=id", "=uid", "customer__username", "customer__email", "lines__product__sku"]
    list_select_related = ["customer"]
    date_hierarchy = "created_at"
    inlines = [OrderLineInline, OrderLogInline]
    fields = [
        "uid",
        "customer",
        "status",
        "failure_reason",
        "total",
        "currency",
        "payment_summary",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("payment")

    @admin.display(description="Status", ordering="status")
    def coloured_status(self, order: Order) -> str:
        return format_html(
            '<b style="color:{}">{}</b>', STATUS_COLOURS[order.status], order.get_status_display()
        )

    @admin.display(description="Payment")
    def payment_summary(self, order: Order) -> str:
        payment = order.payment
        url = reverse("admin:payments_payment_change", args=[payment.pk])
        return format_html(
            '<a href="{}">{} {} — {}</a>, {} attempt(s){}',
            url,
            payment.amount,
            payment.currency,
            payment.get_status_display(),
            payment.attempts,
            f", provider ref {payment.provider_reference}" if payment.provider_reference else "",
        )


@admin.register(OrderLog)
class OrderLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "order", "created_at", "from_status", "to_status", "event", "message"]
    list_filter = ["event", "to_status", "created_at"]
    search_fields = ["=order__id", "message"]
    list_select_related = ["order"]
