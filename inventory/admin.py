from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from catalog.admin import ProductAdmin
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
from core.publisher import publisher
from inventory.models import MovementReason, StockLevel, StockMovement, SyncStatus, WarehouseSyncRun
from inventory.tasks import SYNC_WAREHOUSE


@admin.register(StockLevel)
class StockLevelAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    class Media:
        css = {"all": [ADMIN_CSS]}

    list_display = [
        "product",
        "on_hand",
        "reserved",
        "committed",
        "available",
        "version",
        timestamp_column("updated_at", "Updated at"),
        "movements",
    ]
    search_fields = ["product__sku", "product__name"]
    list_select_related = ["product"]
    ordering = ["product_id"]
    # on_hand/version come from the warehouse and reserved/committed from orders: an operator
    # editing them by hand would break the stock invariants, so operators only look (no
    # change permission: no Save button, a POST is refused). Stock moves by the warehouse
    # sync ("Sync now" on the sync runs) and by orders; there is no admin action that writes.
    readonly_fields = [
        "product",
        "on_hand",
        "version",
        "reserved",
        "committed",
        "available",
        "updated_at",
        "movements",
    ]

    @admin.display(description="Ledger")
    def movements(self, level: StockLevel) -> str:
        """Why the product is at these levels: its movements, the newest first."""
        url = reverse("admin:inventory_stockmovement_changelist")
        return format_html('<a href="{}?product__id__exact={}">movements</a>', url, level.pk)


REASON_TONES: dict[str, str] = {
    MovementReason.OPENING: BadgeTone.MUTED,
    MovementReason.RESERVE: BadgeTone.INFO,
    MovementReason.RELEASE: BadgeTone.WARN,
    MovementReason.COMMIT: BadgeTone.OK,
    MovementReason.SHIP: BadgeTone.DONE,
    MovementReason.WAREHOUSE_SYNC: BadgeTone.MUTED,
    MovementReason.SHIPMENT_ANSWER: BadgeTone.MUTED,
    MovementReason.OPERATOR: BadgeTone.BAD,
}


def _signed(value: int) -> str:
    return f"{value:+d}" if value else "0"


@admin.register(StockMovement)
class StockMovementAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The stock ledger: every change of a product's buckets, why and what caused it. Written
    only with the change itself, so operators only look."""

    class Media:
        css = {"all": [ADMIN_CSS]}

    list_display = [
        "id",
        timestamp_column("created_at", "At"),
        "product",
        "reason_badge",
        "changes",
        "levels_after",
        "cause",
        "actor",
    ]
    list_filter = ["reason", "created_at"]
    date_hierarchy = "created_at"
    search_fields = ["product__sku", "=order_id"]
    search_help_text = "A SKU, or an order's id."
    list_select_related = ["product", "actor", "sync_run"]
    show_full_result_count = False  # the ledger grows with every order: no COUNT(*) of it all
    fields = [
        "product",
        "reason",
        "created_at",
        "changes",
        "levels_after",
        "cause",
        "actor",
        "note",
    ]
    # django-stubs read `fields` as field groups, which readonly_fields does not take.
    readonly_fields = fields  # type: ignore[assignment]

    @admin.display(description="Reason", ordering="reason")
    def reason_badge(self, movement: StockMovement) -> str:
        return badge(movement.get_reason_display(), REASON_TONES[movement.reason])

    @admin.display(description="Change")
    def changes(self, movement: StockMovement) -> str:
        parts = [
            f"{name} {_signed(value)}"
            for name, value in (
                ("on hand", movement.on_hand_change),
                ("reserved", movement.reserved_change),
                ("committed", movement.committed_change),
            )
            if value
        ]
        return ", ".join(parts) or "-"

    @admin.display(description="Levels after")
    def levels_after(self, movement: StockMovement) -> str:
        return format_html(
            '<span class="ops-nowrap">{} on hand · {} reserved · {} committed</span>'
            '<br><span class="ops-quiet">{} available</span>',
            movement.on_hand_after,
            movement.reserved_after,
            movement.committed_after,
            movement.available_after,
        )

    @admin.display(description="Caused by")
    def cause(self, movement: StockMovement) -> str:
        if movement.order_id is not None:
            url = reverse("admin:orders_order_change", args=[movement.order_id])
            return format_html('<a href="{}">order {}</a>', url, movement.order_id)
        if movement.sync_run_id is not None:
            url = reverse("admin:inventory_warehousesyncrun_change", args=[movement.sync_run_id])
            return format_html('<a href="{}">sync run {}</a>', url, movement.sync_run_id)
        return movement.note or "-"


ERROR_SHOWN = 80  # characters of a run's error in the list; all of it on hover and on its page

STATUS_TONES: dict[str, str] = {
    SyncStatus.RUNNING: BadgeTone.INFO,
    SyncStatus.SUCCEEDED: BadgeTone.DONE,
    SyncStatus.PARTIAL: BadgeTone.WARN,
    SyncStatus.FAILED: BadgeTone.BAD,
    SyncStatus.SKIPPED: BadgeTone.MUTED,
}


@admin.register(WarehouseSyncRun)
class WarehouseSyncRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    class Media:
        css = {"all": [ADMIN_CSS]}

    # Beside the two sidebars a 1366 px screen leaves ~700 px for the table: the figures are
    # grouped (rows, skipped) so that what an operator acts on, oversold and the error, stays
    # in sight; every figure is on the run's page.
    list_display = [
        "id",
        "started",
        "status_and_trigger",
        "rows",
        "skipped",
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
    def status_and_trigger(self, run: WarehouseSyncRun) -> str:
        return format_html(
            '{}<br><span class="ops-quiet">by {}</span>',
            badge(run.status, STATUS_TONES[run.status]),
            run.trigger,
        )

    @admin.display(description="Started at", ordering="started_at")
    def started(self, run: WarehouseSyncRun) -> str:
        seconds = run.duration_seconds
        if seconds is None:  # running, or stopped without a word (a killed worker)
            return timestamp(run.started_at)
        return format_html(
            '{}<br><span class="ops-quiet">took {}s</span>',
            timestamp(run.started_at),
            f"{seconds:.2f}",
        )

    @admin.display(description="Applied / seen", ordering="applied")
    def rows(self, run: WarehouseSyncRun) -> str:
        return format_html(
            '<span class="ops-nowrap">{} / {}</span><br>'
            '<span class="ops-quiet ops-nowrap">{} page{}</span>',
            run.applied,
            run.rows_seen,
            run.pages,
            "" if run.pages == 1 else "s",
        )

    @admin.display(description="Skipped")
    def skipped(self, run: WarehouseSyncRun) -> str:
        parts = [
            (run.stale_skipped, "stale"),
            (run.unknown_skus, "unknown"),
            (run.rejected, "rejected"),
        ]
        shown = [(n, what) for n, what in parts if n]
        if not shown:
            return "—"
        return format_html_join(mark_safe("<br>"), "{} {}", shown)

    @admin.display(description="Oversold", ordering="oversold")
    def oversold_flag(self, run: WarehouseSyncRun) -> str:
        if not run.oversold:
            return "0"
        return format_html(
            '<span class="ops-alert">{} SKU(s) below what is held</span>', run.oversold
        )

    @admin.display(description="Error")
    def short_error(self, run: WarehouseSyncRun) -> str:
        if len(run.error) <= ERROR_SHOWN:
            return run.error or "—"
        return format_html(
            '<span title="{}">{}…</span>', run.error, run.error[:ERROR_SHOWN].rstrip()
        )


# --- Products with their stock: catalog knows nothing of stock, so its admin is extended here


class StockLevelInline(ReadOnlyInline):
    model = StockLevel
    fields = ["on_hand", "reserved", "committed", "available", "version", "updated_at"]
    # django-stubs read `fields` as field groups, which readonly_fields does not take.
    readonly_fields = fields  # type: ignore[assignment]
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
    class Media:
        css = {"all": [ADMIN_CSS]}

    list_display = [
        "sku",
        "name",
        "price",
        "is_active",
        "available",
        "on_hand",
        "category_names",
        timestamp_column("updated_at", "Updated at"),
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
            return format_html('<b class="ops-alert">{}</b>', stock.available)
        return str(stock.available)

    @admin.display(description="On hand", ordering="stock__on_hand")
    def on_hand(self, product: Product) -> str:
        stock = _stock(product)
        return "—" if stock is None else str(stock.on_hand)
