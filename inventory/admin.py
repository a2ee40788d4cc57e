from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from catalog.admin import ProductAdmin
from catalog.models import Product
from core.admin import ReadOnlyAdminMixin, ReadOnlyInline
from core.publisher import publisher
from inventory.models import StockLevel, SyncStatus, WarehouseSyncRun
from inventory.tasks import SYNC_WAREHOUSE


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


STATUS_COLOURS = {
    SyncStatus.RUNNING: "#0d6efd",
    SyncStatus.SUCCEEDED: "#198754",
    SyncStatus.PARTIAL: "#b58105",
    SyncStatus.FAILED: "#dc3545",
    SyncStatus.SKIPPED: "#6c757d",
}


@admin.register(WarehouseSyncRun)
class WarehouseSyncRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "started_at",
        "coloured_status",
        "trigger",
        "duration",
        "pages",
        "rows_seen",
        "applied",
        "stale_skipped",
        "unknown_skus",
        "rejected",
        "oversold_flag",
        "short_error",
    ]
    list_filter = ["status", "trigger", "started_at"]
    date_hierarchy = "started_at"
    readonly_fields = [
        "trigger",
        "status",
        "started_at",
        "finished_at",
        "pages",
        "rows_seen",
        "applied",
        "stale_skipped",
        "unknown_skus",
        "oversold",
        "rejected",
        "started_after",
        "cursor",
        "details",
        "error",
    ]

    def get_urls(self):
        sync_now = self.admin_site.admin_view(require_POST(self.sync_now_view))
        return [
            path("sync-now/", sync_now, name="inventory_warehousesyncrun_sync_now"),
            *super().get_urls(),
        ]

    def sync_now_view(self, request: HttpRequest):
        if not request.user.has_perm("inventory.view_warehousesyncrun"):
            messages.error(request, "You may not start a sync.")
        else:
            try:
                publisher().send_task(SYNC_WAREHOUSE, kwargs={"trigger": "admin"})
                messages.success(request, "Sync queued; it appears here when a worker runs it.")
            except Exception as exc:  # the broker is down: say so instead of a 500
                messages.error(request, f"Could not queue the sync: {exc}")
        return HttpResponseRedirect(reverse("admin:inventory_warehousesyncrun_changelist"))

    @admin.display(description="Status", ordering="status")
    def coloured_status(self, run: WarehouseSyncRun) -> str:
        return format_html('<b style="color:{}">{}</b>', STATUS_COLOURS[run.status], run.status)

    @admin.display(description="Duration")
    def duration(self, run: WarehouseSyncRun) -> str:
        seconds = run.duration_seconds
        return "—" if seconds is None else f"{seconds:.2f}s"

    @admin.display(description="Oversold", ordering="oversold")
    def oversold_flag(self, run: WarehouseSyncRun) -> str:
        if not run.oversold:
            return "0"
        return format_html(
            '<b style="color:#dc3545">{} SKU(s) below what is held</b>', run.oversold
        )

    @admin.display(description="Error")
    def short_error(self, run: WarehouseSyncRun) -> str:
        return run.error[:80]


# --- Products with their stock: catalog knows nothing of stock, so its admin is extended here


class StockLevelInline(ReadOnlyInline):
    model = StockLevel
    fields = ["on_hand", "reserved", "committed", "available", "version", "updated_at"]
    readonly_fields = fields
    verbose_name = verbose_name_plural = "stock level"


class StockFilter(admin.SimpleListFilter):
    title = "stock"
    parameter_name = "stock"

    def lookups(self, request, model_admin):
        return [
            ("low", f"Low (available ≤ {settings.LOW_STOCK_THRESHOLD})"),
            ("out", "Out (available ≤ 0)"),
            ("none", "No stock level yet"),
        ]

    def queryset(self, request, queryset):
        match self.value():
            case "low":
                return queryset.filter(stock__available__lte=settings.LOW_STOCK_THRESHOLD)
            case "out":
                return queryset.filter(stock__available__lte=0)
            case "none":
                return queryset.filter(stock__isnull=True)
        return queryset


def _stock(product: Product) -> StockLevel | None:
    return getattr(product, "stock", None)  # a product the warehouse never reported has none


admin.site.unregister(Product)


@admin.register(Product)
class ProductStockAdmin(ProductAdmin):
    list_display = [
        "sku",
        "name",
        "price",
        "is_active",
        "available",
        "on_hand",
        "category_names",
        "updated_at",
    ]
    list_filter = [StockFilter, *ProductAdmin.list_filter]
    list_select_related = ["stock"]
    inlines = [*ProductAdmin.inlines, StockLevelInline]

    @admin.display(description="Available", ordering="stock__available")
    def available(self, product: Product) -> str:
        stock = _stock(product)
        if stock is None:
            return "—"
        if stock.available <= settings.LOW_STOCK_THRESHOLD:
            return format_html('<b style="color:#dc3545">{}</b>', stock.available)
        return str(stock.available)

    @admin.display(description="On hand", ordering="stock__on_hand")
    def on_hand(self, product: Product) -> str:
        stock = _stock(product)
        return "—" if stock is None else str(stock.on_hand)
