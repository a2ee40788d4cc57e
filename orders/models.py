import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from catalog.models import Product
from payments.models import Payment


class OrderStatus(models.TextChoices):
    PENDING = "pending"
    RESERVED = "reserved"
    CONFIRMED = "confirmed"
    FULFILLED = "fulfilled"
    FAILED = "failed"
    CANCELLED = "cancelled"


class FailureReason(models.TextChoices):
    OUT_OF_STOCK = "out_of_stock"
    PAYMENT_DECLINED = "payment_declined"
    PAYMENT_ERROR = "payment_error"
    RESERVATION_EXPIRED = "reservation_expired"


FINAL_STATUSES = (OrderStatus.FULFILLED, OrderStatus.FAILED, OrderStatus.CANCELLED)


class Order(models.Model):
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    status = models.CharField(
        max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING
    )
    failure_reason = models.CharField(max_length=32, choices=FailureReason.choices, blank=True)
    total = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    # Created with the order, so the charge's idempotency key is fixed before any attempt.
    payment = models.OneToOneField(Payment, on_delete=models.PROTECT, related_name="order")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(total__gte=0), name="order_total_non_negative"),
            models.CheckConstraint(
                condition=(Q(status=OrderStatus.FAILED) & ~Q(failure_reason=""))
                | (~Q(status=OrderStatus.FAILED) & Q(failure_reason="")),
                name="order_failure_reason_iff_failed",
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "-id"], name="order_customer_recent"),
            models.Index(fields=["status", "updated_at"], name="order_status_updated"),
        ]

    def __str__(self) -> str:
        return f"order {self.pk} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="order_lines")
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        ordering = ["product_id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "product"], name="order_line_unique_product"),
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="order_line_quantity_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x product {self.product_id}"


class OrderLog(models.Model):
    """The original spec's Order_Logs: one row per transition (and per notable event, such as
    a retry, where from_status == to_status)."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="logs")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    event = models.CharField(max_length=48)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["order", "id"], name="order_log_by_order")]

    def __str__(self) -> str:
        return f"{self.event}: {self.from_status or '-'} -> {self.to_status}"
