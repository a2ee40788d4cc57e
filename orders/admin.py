from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from catalog.models import Product
from core.admin import (
    ADMIN_CSS,
    BadgeTone,
    ReadOnlyAdminMixin,
    ReadOnlyInline,
    badge,
    timestamp,
    timestamp_column,
)
from core.errors import DomainError
from inventory.admin import ProductStockAdmin
from orders.interventions import order_cancel, order_repush_fulfilment, order_retry
from orders.models import Order, OrderLine, OrderLog, OrderStatus
from payments.admin import PaymentAdmin
from payments.models import Payment

# The index page opens with the operations summary (orders/templatetags/operations.py).
admin.site.index_template = "admin/orders/operations_index.html"

STATUS_TONES: dict[str, str] = {
    OrderStatus.PENDING: BadgeTone.MUTED,
    OrderStatus.RESERVED: BadgeTone.INFO,
    OrderStatus.CONFIRMED: BadgeTone.OK,
    OrderStatus.FULFILLED: BadgeTone.DONE,
    OrderStatus.FAILED: BadgeTone.BAD,
    OrderStatus.CANCELLED: BadgeTone.WARN,
}


def status_badge(status: str) -> str:
    return badge(OrderStatus(status).label, STATUS_TONES[status])


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = ["product_link", "quantity", "unit_price"]
    # django-stubs read `fields` as field groups, which readonly_fields does not take.
    readonly_fields = fields  # type: ignore[assignment]

    @admin.display(description="Product")
    def product_link(self, line: OrderLine) -> str:
        url = reverse("admin:catalog_product_change", args=[line.product_id])
        return format_html('<a href="{}">{}</a>', url, line.product)


class OrderLogInline(ReadOnlyInline):
    model = OrderLog
    fields = ["time", "from_status", "to_status", "event", "actor", "message", "data"]
    # django-stubs read `fields` as field groups, which readonly_fields does not take.
    readonly_fields = fields  # type: ignore[assignment]
    ordering = ["id"]

    @admin.display(description="Time")
    def time(self, entry: OrderLog) -> str:
        return timestamp(entry.created_at)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")


class ProductFilter(admin.SimpleListFilter):
    """Orders with a line of one product (`?product=<id>`, linked from the product's page);
    shown only while in use, since listing every product would make no filter."""

    title = "product"
    parameter_name = "product"

    def lookups(self, request, model_admin):
        value = self.value()
        product = Product.objects.filter(pk=value).first() if value and value.isdigit() else None
        return [(str(product.pk), product.sku)] if product else []

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(lines__product_id=value)
        return queryset


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    class Media:
        css = {"all": [ADMIN_CSS]}

    list_display = [
        "id",
        "coloured_status",
        "failure_reason",
        "customer",
        "total_with_currency",
        timestamp_column("created_at", "Created at"),
        timestamp_column("updated_at", "Updated at"),
    ]
    list_filter = [
        "status",
        "failure_reason",
        ("cancel_requested_at", admin.EmptyFieldListFilter),
        "created_at",
        ProductFilter,
    ]
    search_fields = ["=id", "=uid", "customer__username", "customer__email", "lines__product__sku"]
    list_select_related = ["customer"]
    date_hierarchy = "created_at"
    inlines = [OrderLineInline, OrderLogInline]
    actions = ["retry_orders", "cancel_orders", "repush_fulfilment"]
    fields = [
        "uid",
        "customer",
        "status",
        "failure_reason",
        "total",
        "currency",
        "payment_summary",
        "payment_history",
        "cancel_requested_at",
        "cancel_requested_by",
        "cancel_requested_via",
        "stock_attempts",
        "ship_attempts",
        "reserved_at",
        "progressed_at",
        "reconciled_at",
        "created_at",
        "updated_at",
    ]
    # django-stubs read `fields` as field groups, which readonly_fields does not take.
    readonly_fields = fields  # type: ignore[assignment]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("payment")

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("orders.cancel_order")

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("orders.change_order")

    def has_repush_permission(self, request) -> bool:
        return request.user.has_perm("orders.change_order")

    def _run_each(self, request, queryset, service, *, done: str, refused: str) -> None:
        """Run an operator service order by order: each one succeeds or is reported with its
        reason, and none runs inside a transaction of the others."""
        succeeded = []
        for order in queryset.order_by("id"):
            try:
                service(order=order, actor=request.user)
            except DomainError as exc:
                self.message_user(
                    request, f"{refused} order {order.pk}: {exc.message}", messages.ERROR
                )
            else:
                succeeded.append(str(order.pk))
        if succeeded:
            self.message_user(request, done.format(ids=", ".join(succeeded)), messages.SUCCESS)

    @admin.action(
        description="Retry selected failed orders (with a new payment)", permissions=["retry"]
    )
    def retry_orders(self, request, queryset) -> None:
        self._run_each(
            request,
            queryset,
            order_retry,
            refused="Not retried:",
            done="Retried order(s) {ids}: processing again.",
        )

    @admin.action(
        description="Push selected confirmed orders to the warehouse again", permissions=["repush"]
    )
    def repush_fulfilment(self, request, queryset) -> None:
        self._run_each(
            request,
            queryset,
            order_repush_fulfilment,
            refused="Not pushed:",
            done="Order(s) {ids} pushed to the warehouse again.",
        )

    @admin.action(
        description="Cancel selected orders (refunding confirmed ones)", permissions=["cancel"]
    )
    def cancel_orders(self, request, queryset) -> None:
        """The same cancellation as the API's, order by order: each one succeeds or is reported
        with its reason; the refunds run outside any transaction."""
        cancelled, refused = [], []
        for order in queryset.order_by("id"):
            try:
                order_cancel(order=order, actor=request.user, via="admin")
            except DomainError as exc:
                refused.append(f"order {order.pk}: {exc.message}")
            else:
                cancelled.append(str(order.pk))
        if cancelled:
            self.message_user(
                request, f"Cancelled order(s) {', '.join(cancelled)}.", messages.SUCCESS
            )
        for reason in refused:
            self.message_user(request, f"Not cancelled, {reason}", messages.ERROR)

    @admin.display(description="Status", ordering="status")
    def coloured_status(self, order: Order) -> str:
        being_cancelled = order.status == OrderStatus.CONFIRMED and order.cancel_requested_at
        return format_html(
            "{}{}", status_badge(order.status), " (being cancelled)" if being_cancelled else ""
        )

    @admin.display(description="Total", ordering="total")
    def total_with_currency(self, order: Order) -> str:
        return f"{order.total} {order.currency}"

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

    @admin.display(description="Payments")
    def payment_history(self, order: Order) -> str:
        """Every payment made for the order, the current one first (a retry adds one)."""
        payments = order.payments.order_by("-id")
        return format_html_join(
            mark_safe("<br>"),
            '<a href="{}">payment {}</a>: {}{}',
            (
                (
                    reverse("admin:payments_payment_change", args=[p.pk]),
                    p.pk,
                    p.get_status_display(),
                    " (current)" if p.pk == order.payment_id else "",
                )
                for p in payments
            ),
        )


@admin.register(OrderLog)
class OrderLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "order_link",
        timestamp_column("created_at", "Created at"),
        "from_status",
        "to_status",
        "event",
        "actor",
        "message",
    ]
    list_filter = ["event", "to_status", "created_at"]
    search_fields = ["=order__id", "message", "actor__username"]
    list_select_related = ["order", "actor"]

    @admin.display(description="Order", ordering="order_id")
    def order_link(self, entry: OrderLog) -> str:
        url = reverse("admin:orders_order_change", args=[entry.order_id])
        return format_html('<a href="{}">{}</a>', url, entry.order)


# --- Links from lower apps' screens to orders (they may not import orders, so their admins
# are extended here, like inventory extends catalog's product admin) -----------------------

admin.site.unregister(Payment)


@admin.register(Payment)
class PaymentWithOrderAdmin(PaymentAdmin):
    list_display = [
        "order_list_link" if name == "order_number" else name for name in PaymentAdmin.list_display
    ]
    readonly_fields = [*PaymentAdmin.readonly_fields, "order_link"]

    @admin.display(description="Order", ordering="order__id")
    def order_list_link(self, payment: Payment) -> str:
        url = reverse("admin:orders_order_change", args=[payment.order.pk])
        return format_html('<a href="{}">{}</a>', url, payment.order.pk)

    @admin.display(description="Order")
    def order_link(self, payment: Payment) -> str:
        order = payment.order
        url = reverse("admin:orders_order_change", args=[order.pk])
        current = "" if order.payment_id == payment.pk else " (an earlier payment, before a retry)"
        return format_html('<a href="{}">{}</a>{}', url, order, current)


admin.site.unregister(Product)


@admin.register(Product)
class ProductWithOrdersAdmin(ProductStockAdmin):
    readonly_fields = [*ProductStockAdmin.readonly_fields, "orders_link"]

    @admin.display(description="Orders")
    def orders_link(self, product: Product) -> str:
        if not product.pk:
            return "—"
        url = reverse("admin:orders_order_changelist")
        return format_html('<a href="{}?product={}">Orders with this product</a>', url, product.pk)
