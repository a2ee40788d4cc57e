from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from catalog.models import Product


class StockLevel(models.Model):
    """One row per product: the heart of correctness (see docs/DESIGN.md, "Stock model").

    `on_hand`/`version` come only from the warehouse, by compare-and-set on `version`.
    `reserved` and `committed` are ours. `available` is derived by the database.
    """

    product = models.OneToOneField(
        Product, on_delete=models.CASCADE, primary_key=True, related_name="stock"
    )
    on_hand = models.IntegerField(default=0)
    version = models.BigIntegerField(
        default=0, help_text="The warehouse's version of on_hand for this SKU."
    )
    reserved = models.IntegerField(default=0)
    committed = models.IntegerField(default=0)
    available = models.GeneratedField(
        expression=F("on_hand") - F("reserved") - F("committed"),
        output_field=models.IntegerField(),
        db_persist=True,
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["product_id"]
        constraints = [
            models.CheckConstraint(condition=Q(on_hand__gte=0), name="stock_on_hand_non_negative"),
            models.CheckConstraint(
                condition=Q(reserved__gte=0), name="stock_reserved_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(committed__gte=0), name="stock_committed_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"stock of product {self.product_id}"


class SyncStatus(models.TextChoices):
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # reached the end of the snapshot
    # Stopped by its time limit before the end; the next run resumes at its cursor.
    PARTIAL = "partial"
    FAILED = "failed"  # the next run resumes at its cursor too
    SKIPPED = "skipped"  # another run held the lease


class WarehouseSyncRun(models.Model):
    """One run of the warehouse stock sync, whatever its outcome (shown in the admin)."""

    trigger = models.CharField(max_length=16, help_text="beat, admin, command or manual")
    status = models.CharField(max_length=16, choices=SyncStatus.choices, default=SyncStatus.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    rows_seen = models.PositiveIntegerField(default=0)
    applied = models.PositiveIntegerField(default=0, help_text="SKUs whose newer level was set")
    stale_skipped = models.PositiveIntegerField(
        default=0, help_text="SKUs whose reported version was not newer than ours"
    )
    unknown_skus = models.PositiveIntegerField(default=0, help_text="SKUs not in our catalog")
    oversold = models.PositiveIntegerField(
        default=0,
        help_text="SKUs left with available < 0: the warehouse has fewer units than orders hold",
    )
    rejected = models.PositiveIntegerField(
        default=0,
        help_text="Rows the warehouse got wrong (a negative count, not a number, ...): skipped",
    )
    started_after = models.CharField(
        max_length=64,
        blank=True,
        help_text="The SKU it resumed after, where the run before it stopped (empty: the start)",
    )
    cursor = models.CharField(
        max_length=64,
        blank=True,
        help_text="The last SKU of the last page it applied: where the next run resumes if "
        "this one stopped before the end",
    )
    details = models.JSONField(
        default=dict, blank=True, help_text="Samples: unknown, oversold and rejected SKUs."
    )
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "-id"], name="sync_run_status_recent")]

    def __str__(self) -> str:
        return f"sync run {self.pk} ({self.status})"

    @property
    def duration_seconds(self) -> float | None:
        if not self.finished_at:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class MovementReason(models.TextChoices):
    # The levels a product had when its ledger began: rows that existed before the ledger,
    # or were made in bulk (a benchmark's, an import's). A row made later starts with the
    # change that made it (a warehouse sync, an operator).
    OPENING = "opening", "Opening balance"
    RESERVE = "reserve", "Reserved for an order"
    RELEASE = "release", "Released by an order"  # failed, expired or cancelled
    COMMIT = "commit", "Committed (paid)"
    SHIP = "ship", "Shipped"
    WAREHOUSE_SYNC = "warehouse_sync", "Warehouse sync"
    SHIPMENT_ANSWER = "shipment_answer", "Shipment answer"  # on_hand from a shipment's answer
    OPERATOR = "operator", "Set by an operator"
    # Changed past the ledger, found by the database itself when the change committed
    # (inventory migration 0006's trigger): by a worker of a release before the ledger, or by
    # hand in the database.
    OUTSIDE = "outside", "Changed outside the application"


class StockMovement(models.Model):
    """One change of a product's `on_hand`, `reserved` or `committed`, written in the same
    transaction (and set-based, in the same few statements) as the change itself: the ledger
    that answers "why is this product at 7?". Each product's changes add up to its levels,
    and each row's levels are those right after it (audit_stock checks both).

    Rows of one product are in the order their changes were made (by id): each is written
    while its stock row is locked. Never updated or deleted."""

    id = models.BigAutoField(primary_key=True)
    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="movements", db_index=False
    )  # indexed with id below
    reason = models.CharField(max_length=16, choices=MovementReason.choices)
    on_hand_change = models.IntegerField(default=0)
    reserved_change = models.IntegerField(default=0)
    committed_change = models.IntegerField(default=0)
    on_hand_after = models.IntegerField()
    reserved_after = models.IntegerField()
    committed_after = models.IntegerField()
    # The order that caused it. Not a foreign key: inventory does not depend on orders, and
    # the ledger outlives anything it refers to.
    order_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    sync_run = models.ForeignKey(
        WarehouseSyncRun,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="movements",
        help_text="The warehouse sync run that applied it.",
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The person who did it (empty: the system).",
    )
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["product", "-id"], name="movement_product_recent"),
            models.Index(fields=["created_at"], name="movement_created_at"),
        ]

    def __str__(self) -> str:
        return f"{self.reason} of product {self.product_id} ({self.pk})"

    @property
    def available_after(self) -> int:
        return self.on_hand_after - self.reserved_after - self.committed_after
