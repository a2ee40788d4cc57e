from django.db import models
from django.db.models import F, Q

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
