import uuid

from django.db import models
from django.db.models import Q


def new_idempotency_key() -> str:
    return f"pay_{uuid.uuid4().hex}"


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "pending"  # created, not yet answered by the provider
    IN_DOUBT = "in_doubt", "in doubt"  # a charge may exist: ask the provider by key
    CAPTURED = "captured", "captured"
    DECLINED = "declined", "declined"
    NOT_CHARGED = "not_charged", "not charged"  # the provider confirmed no charge exists
    REFUNDED = "refunded", "refunded"
    # A refund was asked for and not answered: the charge may be refunded; ask the provider.
    REFUND_IN_DOUBT = "refund_in_doubt", "refund in doubt"


class Payment(models.Model):
    """One charge at the payment provider. The idempotency key is created with the row and
    never changes, so every retry of the charge carries the same key and the provider can
    never charge twice."""

    idempotency_key = models.CharField(
        max_length=64, unique=True, default=new_idempotency_key, editable=False
    )
    reference = models.CharField(max_length=64, help_text="What the charge is for, e.g. an order.")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    status = models.CharField(
        max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    provider_reference = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="payment_amount_non_negative"),
        ]
        indexes = [models.Index(fields=["status", "updated_at"], name="payment_status_updated")]

    def __str__(self) -> str:
        return f"payment {self.pk} ({self.status})"
