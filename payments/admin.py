from django.contrib import admin
from django.utils.html import format_html

from core.admin import ADMIN_CSS, BadgeTone, ReadOnlyAdminMixin, badge, timestamp_column
from payments.models import Payment, PaymentStatus

STATUS_TONES: dict[str, str] = {
    PaymentStatus.PENDING: BadgeTone.MUTED,
    PaymentStatus.IN_DOUBT: BadgeTone.WARN,
    PaymentStatus.CAPTURED: BadgeTone.DONE,
    PaymentStatus.DECLINED: BadgeTone.BAD,
    PaymentStatus.NOT_CHARGED: BadgeTone.MUTED,
    PaymentStatus.REFUNDED: BadgeTone.INFO,
    PaymentStatus.REFUND_IN_DOUBT: BadgeTone.WARN,
    PaymentStatus.VOIDED: BadgeTone.MUTED,
}


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    class Media:
        css = {"all": [ADMIN_CSS]}

    list_display = [
        "id",
        "order_number",
        "amount_with_currency",
        "coloured_status",
        "attempts",
        "reference",
        timestamp_column("updated_at", "Updated at"),
    ]
    list_filter = ["status", "currency"]
    search_fields = ["=order__uid", "idempotency_key", "provider_reference"]
    list_select_related = ["order"]
    readonly_fields = [
        "idempotency_key",
        "amount",
        "currency",
        "status",
        "provider_reference",
        "attempts",
        "tries",
        "last_attempt_at",
        "checked_at",
        "abandoned_at",
        "last_error",
        "created_at",
        "updated_at",
    ]

    @admin.display(description="Order", ordering="order__id")
    def order_number(self, payment: Payment) -> int:
        return payment.order.pk

    @admin.display(description="Amount", ordering="amount")
    def amount_with_currency(self, payment: Payment) -> str:
        return f"{payment.amount} {payment.currency}"

    @admin.display(description="Status", ordering="status")
    def coloured_status(self, payment: Payment) -> str:
        return badge(payment.get_status_display(), STATUS_TONES[payment.status])

    @admin.display(description="Provider reference", ordering="provider_reference")
    def reference(self, payment: Payment) -> str:
        # The whole reference, breaking where it must: an operator copies it to look the
        # charge up at the provider.
        if not payment.provider_reference:
            return "—"
        return format_html('<span class="ops-ident">{}</span>', payment.provider_reference)
