from django.contrib import admin

from core.admin import ReadOnlyAdminMixin
from payments.models import Payment


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "order",
        "amount",
        "currency",
        "status",
        "attempts",
        "provider_reference",
        "updated_at",
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
