from django.contrib import admin

from core.admin import ReadOnlyAdminMixin
from payments.models import Payment


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "reference",
        "amount",
        "currency",
        "status",
        "attempts",
        "provider_reference",
        "updated_at",
    ]
    list_filter = ["status", "currency"]
    search_fields = ["reference", "idempotency_key", "provider_reference"]
    readonly_fields = [
        "idempotency_key",
        "reference",
        "amount",
        "currency",
        "status",
        "provider_reference",
        "attempts",
        "last_error",
        "created_at",
        "updated_at",
    ]
