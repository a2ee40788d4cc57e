"""Order events for other systems: subscriptions, the transactional outbox of events, and each
event's delivery to each subscription with every attempt (docs/webhooks.md)."""

import base64
import secrets
import uuid

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone


class EventType(models.TextChoices):
    ORDER_CREATED = "order.created", "Order created"
    ORDER_RESERVED = "order.reserved", "Order reserved"
    ORDER_CONFIRMED = "order.confirmed", "Order confirmed (paid)"
    ORDER_FAILED = "order.failed", "Order failed"
    ORDER_CANCELLED = "order.cancelled", "Order cancelled"
    ORDER_FULFILLED = "order.fulfilled", "Order fulfilled (shipped)"
    ORDER_REFUNDED = "order.refunded", "Order refunded"
    STOCK_LOW = "stock.low", "Stock low"


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form: `whsec_` and 24 random bytes, base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class Subscription(models.Model):
    """A system that wants some events, at a URL, signed with its own secret."""

    url = models.URLField(max_length=500, help_text="Where events are POSTed.")
    event_types = models.JSONField(
        default=list, help_text="The event types it receives: " + ", ".join(EventType.values)
    )
    secret = models.CharField(
        max_length=100,
        default=new_secret,
        help_text="Signs every request (webhook-signature); the receiver verifies with it.",
    )
    is_active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    failing_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Its first failed attempt since the last delivered one (empty: not failing).",
    )
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"subscription {self.pk} ({self.url})"


class Event(models.Model):
    """The outbox: one row per event, written in the same transaction (and, where the change
    is one statement, the same statement) as the change it tells of. Delivered from here by
    the webhooks worker, so an event is never lost between a commit and a send."""

    id = models.BigAutoField(primary_key=True)
    uid = models.UUIDField(
        default=uuid.uuid4,
        unique=True,
        help_text="The event's id (webhook-id): receivers drop a repeat by it.",
    )
    type = models.CharField(max_length=32, choices=EventType.choices)
    subject_id = models.BigIntegerField(help_text="The order's id, or the product's (stock).")
    data = models.JSONField(default=dict, blank=True, help_text="What happened, as it happened.")
    # The database's time, whichever machine wrote the change (core/clock.py).
    created_at = models.DateTimeField(db_default=Now())
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="When its deliveries were made, one per subscription."
    )
    # Fixed in the change's transaction, so nothing between then and the dispatch (a
    # subscription disabled, a backlog, a crash) can lose the event for one of them. Null:
    # written by a release before this field, for the subscriptions active at dispatch.
    subscription_ids = models.JSONField(
        null=True,
        blank=True,
        help_text="The subscriptions it is for: those receiving its type when it was written.",
    )
    body = models.TextField(
        blank=True,
        help_text="The JSON body sent, fixed at its first send: every attempt of "
        "every subscription sends the same.",
    )

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["id"], condition=Q(dispatched_at__isnull=True), name="event_undispatched"
            ),
            models.Index(fields=["type", "subject_id"], name="event_by_subject"),
            models.Index(fields=["created_at"], name="event_created_at"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.subject_id} ({self.uid})"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # to be sent, now or at next_attempt_at
    DELIVERED = "delivered"  # answered 2xx
    FAILED = "failed"  # every attempt failed: given up (an operator may redeliver)


class Delivery(models.Model):
    """One event to one subscription: its state, and when it is next tried."""

    id = models.BigAutoField(primary_key=True)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        default=timezone.now,
        help_text="When it is tried next; a worker sending it moves this past its claim.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "subscription"], name="one_delivery_each")
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status=DeliveryStatus.PENDING),
                name="delivery_due",
            ),
            models.Index(fields=["subscription", "-id"], name="delivery_by_subscription"),
            models.Index(
                fields=["subscription", "next_attempt_at"],
                condition=Q(status=DeliveryStatus.PENDING),
                name="delivery_due_by_subscription",
            ),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.status})"


class Attempt(models.Model):
    """One request of a delivery, whatever came of it."""

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_set")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="No answer: why (timeout, refused, ...).")
    response_excerpt = models.TextField(blank=True, help_text="The answer's first 500 characters.")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
