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
        permissions = [("cancel_order", "Can cancel orders (refunding a captured payment)")]

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


class IdempotencyKeyState(models.TextChoices):
    IN_FLIGHT = "in_flight", "in flight"
    COMPLETED = "completed"


class IdempotencyKey(models.Model):
    """One `Idempotency-Key` a user sent with an order creation (per user, kept
    IDEMPOTENCY_KEY_TTL_HOURS): claimed while the request runs, then holding the answer to
    replay. `claim_token` identifies the request holding the claim, so a request whose
    abandoned claim was retaken cannot complete it any more."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idempotency_keys"
    )
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(
        max_length=64, help_text="SHA-256 of the operation and its canonical JSON body."
    )
    state = models.CharField(
        max_length=16, choices=IdempotencyKeyState.choices, default=IdempotencyKeyState.IN_FLIGHT
    )
    claim_token = models.UUIDField(default=uuid.uuid4)
    claimed_at = models.DateTimeField()
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # The rendered JSON, byte for byte as first sent (a JSON column would reorder its keys).
    response_body = models.TextField(blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    order = models.ForeignKey(
        Order, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user"),
            models.CheckConstraint(
                condition=Q(state=IdempotencyKeyState.IN_FLIGHT) | Q(response_status__isnull=False),
                name="idempotency_key_completed_has_response",
            ),
        ]

    def __str__(self) -> str:
        return f"idempotency key {self.key!r} of user {self.user_id} ({self.state})"
