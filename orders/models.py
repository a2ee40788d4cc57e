import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from catalog.models import Product
from core.models import moment
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
OPEN_STATUSES = (OrderStatus.PENDING, OrderStatus.RESERVED, OrderStatus.CONFIRMED)


class OrderEvent(models.TextChoices):
    """Everything that is logged about an order. The first group moves its status (the
    table in orders/transitions.py); the others record what happened while it stayed."""

    # the way forward
    CREATED = "created"
    RESERVED = "reserved"
    CONFIRMED = "confirmed"
    FULFILLED = "fulfilled"
    # the ends short of it, and the one way back
    OUT_OF_STOCK = "out_of_stock", "failed: out of stock"
    PAYMENT_DECLINED = "payment_declined", "failed: payment declined"
    PAYMENT_ERROR = "payment_error", "failed: payment error"
    RESERVATION_EXPIRED = "reservation_expired", "failed: reservation expired"
    CANCELLED = "cancelled"
    RETRIED = "retried", "retried by an operator"

    # waiting for stock, and for the payment service
    STOCK_RETRY = "stock_retry", "waiting for stock"
    PAYMENT_RETRY = "payment_retry", "payment retry"
    PAYMENT_IN_DOUBT = "payment_in_doubt", "payment in doubt"
    PAYMENT_LOOKED_UP = "payment_looked_up", "payment looked up"
    REFUNDED = "refunded"
    # the warehouse
    SHIPMENT_RETRY = "shipment_retry", "shipment retry"
    SHIPMENT_UNANSWERED = "shipment_unanswered", "shipment unanswered"
    SHIPMENT_REFUSED = "shipment_refused", "shipment refused"
    SHIPPED_AFTER_CANCEL = "shipped_after_cancel", "shipped after cancel"
    # a confirmed order's cancellation, step by step
    CANCEL_REQUESTED = "cancel_requested", "cancellation requested"
    CANCEL_SHIPMENT_UNANSWERED = "cancel_shipment_unanswered", "cancellation: warehouse silent"
    CANCEL_SHIPMENT_REFUSED = "cancel_shipment_refused", "cancellation: warehouse refused"
    CANCEL_REFUND_UNANSWERED = "cancel_refund_unanswered", "cancellation: refund unanswered"
    CANCEL_REFUND_REFUSED = "cancel_refund_refused", "cancellation: refund refused"
    # and how it ended when the warehouse had shipped
    CANCEL_REFUSED_SHIPPED = "cancel_refused_shipped", "cancellation refused: shipped"
    # the reconciler's and the operators' doing, and failures of a step
    REQUEUED = "requeued", "processing published again"
    FULFILMENT_REPUSHED = "fulfilment_repushed", "pushed to the warehouse again"
    RECONCILE_FAILED = "reconcile_failed", "reconciler failed on it"
    STEP_FAILED = "step_failed", "processing failed"


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
    # The current payment (order.payments holds every one). Created with the order, so the
    # charge's idempotency key is fixed before any attempt; an operator's retry replaces it.
    # RESTRICT: a payment cannot be deleted alone, only with its order.
    payment = models.OneToOneField(Payment, on_delete=models.RESTRICT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    # What the workflow and the reconciler decide from, kept by orders/scheduling.py (through
    # orders/transitions.py for a status change); the log is history only. Times are the
    # database's (core/clock.py).
    stock_attempts = models.PositiveIntegerField(
        default=0, help_text="Reservations refused for want of stock since it was (re)opened."
    )
    ship_attempts = models.PositiveIntegerField(
        default=0, help_text="Pushes to the warehouse sent since it was confirmed (or retried)."
    )
    step_errors = models.PositiveIntegerField(
        default=0,
        db_default=0,  # rows written by an earlier release, during a rolling deploy
        help_text="Steps of its processing that failed with an unexpected error (a bug, a "
        "bad answer): each logged on it and retried with backoff.",
    )
    reserved_at = models.DateTimeField(null=True, blank=True)
    progressed_at = models.DateTimeField(
        db_default=Now(),
        help_text="Last progress of its processing: a transition, or a retry scheduled.",
    )
    ready_at = models.DateTimeField(
        null=True,
        blank=True,
        db_default=Now(),
        help_text="From when a worker may take it up (a retry waits until then); empty: no "
        "worker step left (ended, or waiting on the reconciler or an operator).",
    )
    claimed_until = moment(
        "A worker is processing it in a batch, until then at most (a worker that "
        "dies lets it go when this passes)."
    )
    reconciled_at = moment("When the reconciler last looked at it.")
    cancel_requested_at = moment(
        "A confirmed order being cancelled: it is not pushed to the warehouse, and "
        "the cancellation goes on until it is done or the warehouse has shipped it."
    )
    cancel_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    cancel_requested_via = models.CharField(max_length=16, blank=True)

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
            # The reconciler's stuck orders: the open ones (few, however many orders there are)
            # without progress since a given time.
            models.Index(
                fields=["progressed_at"],
                name="order_open_progress",
                condition=Q(status__in=OPEN_STATUSES),
            ),
            # The orders a worker may take up now (orders/scheduling.py).
            models.Index(
                fields=["ready_at", "id"],
                name="order_ready",
                condition=Q(status__in=OPEN_STATUSES, ready_at__isnull=False),
            ),
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
    """The original spec's Order_Logs: one row per transition, and per notable event where
    from_status == to_status. History, for people: nothing reads it to decide."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="logs")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    event = models.CharField(max_length=48, choices=OrderEvent.choices)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who did it; empty when the system did.",
    )

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
