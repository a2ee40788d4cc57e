from django.contrib import admin

from inventory.models import StockLevel


@admin.register(StockLevel)
class StockLevelAdmin(admin.ModelAdmin):
    list_display = [
        "product",
        "on_hand",
        "reserved",
        "committed",
        "available",
        "version",
        "updated_at",
    ]
    search_fields = ["product__sku", "product__name"]
    list_select_related = ["product"]
    ordering = ["product_id"]
    # on_hand/version come from the warehouse and reserved/committed from orders: an operator
    # editing them by hand would break the stock invariants, so every field is read-only.
    readonly_fields = [
        "product",
        "on_hand",
        "version",
        "reserved",
        "committed",
        "available",
        "updated_at",
    ]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
