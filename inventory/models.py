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
