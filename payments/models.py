import uuid
from datetime import datetime, timedelta

from django.db import models
from django.db.models import F, Q

from core.models import moment


def new_idempotency_key() -> str:
    return f"pay_{uuid.uuid4().hex}"


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "pending"  # created, no charge requested yet
    IN_DOUBT = "in_doubt", "in doubt"  # a charge was requested, no answer: ask the provider
    CAPTURED = "captured", "captured"
    DECLINED = "declined", "declined"
    # The provider said it holds no charge for the key, or refused the request outright. A
    # charge request still on its way could yet make one (Payment.last_attempt_at).
    NOT_CHARGED = "not_charged", "not charged"
    REFUNDED = "refunded", "refunded"
    # A refund was asked for and not answered: the charge may be refunded; ask the provider.
    REFUND_IN_DOUBT = "refund_in_doubt", "refund in doubt"
    # Never charged, and never will be: its order failed, was cancelled or took a new payment
    # before any charge was requested.
    VOIDED = "voided", "voided"


S = PaymentStatus
# A charge may be requested (again) from these.
CHARGEABLE = frozenset({S.PENDING, S.NOT_CHARGED})
# The provider's answer about a charge, and what our record may be when it is written: an
# answer never overwrites what a later step already knows (a capture never undoes a refund
# under way, nor a claim a capture). Every status change goes through payments.services,
# by an UPDATE guarded by these.
ANSWER_REPLACES = {
    S.CAPTURED: frozenset({S.PENDING, S.IN_DOUBT, S.NOT_CHARGED, S.CAPTURED}),
    S.DECLINED: frozenset({S.PENDING, S.IN_DOUBT, S.NOT_CHARGED, S.DECLINED}),
    S.REFUNDED: frozenset(set(S) - {S.DECLINED}),
}
# A capture is, or may be, held at the provider.
MAY_HOLD_CAPTURE = frozenset({S.CAPTURED, S.IN_DOUBT, S.REFUND_IN_DOUBT})


class PaymentQuerySet(models.QuerySet):
    def may_hold_capture(self, *, now: datetime, window: timedelta) -> "PaymentQuerySet":
        """Payments whose charge is, or may be, captured at the provider: captured, in doubt,
        a refund in doubt, or "not charged" while a request sent within `window` before
        `now` may still land."""
        return self.filter(
            Q(status__in=MAY_HOLD_CAPTURE)
            | Q(status__in=CHARGEABLE, attempts__gt=0, last_attempt_at__gte=now - window)
        )

    def to_settle(
        self, *, now: datetime, window: timedelta, recheck_after: timedelta
    ) -> "PaymentQuerySet":
        """Abandoned payments (their order failed, was cancelled, or took a new payment) that
        may hold a capture, due for a look: never looked at, or not for `recheck_after`. One in
        doubt stays due until the provider answers, however long that takes; one the provider
        said it has not charged, only while a request of ours may still land (`window` after
        the last one was sent). Least recently looked at first, so none starves the others."""
        return (
            self.filter(abandoned_at__isnull=False, attempts__gt=0)
            .may_hold_capture(now=now, window=window)
            .filter(Q(checked_at__isnull=True) | Q(checked_at__lte=now - recheck_after))
            .order_by(F("checked_at").asc(nulls_first=True), "id")
        )


class Payment(models.Model):
    """One charge at the payment provider for an order. The idempotency key is created with
    the row and never changes, so every retry of the charge carries the same key and the
    provider can never charge twice. An order has one current payment (Order.payment); an
    operator's retry gives it a new one, and the earlier ones stay, abandoned."""

    # By the order's uid (known before the order row is written, so an order and its payment
    # are inserted in one transaction without a second write; the constraint is checked at
    # commit). payments names orders.Order lazily and never imports it.
    order = models.ForeignKey(
        "orders.Order",
        to_field="uid",
        db_column="order_uid",
        on_delete=models.CASCADE,  # an order's payments go with it (orders are kept, though)
        related_name="payments",
    )
    idempotency_key = models.CharField(
        max_length=64, unique=True, default=new_idempotency_key, editable=False
    )
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    status = models.CharField(
        max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    provider_reference = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveIntegerField(
        default=0, help_text="Charge requests sent to the provider."
    )
    tries = models.PositiveIntegerField(
        default=0,
        help_text="Times the workflow tried to settle the charge (a charge request or a lookup, "
        "answered or not): its retry budget and backoff count these.",
    )
    last_attempt_at = moment(
        "When the last charge request was sent: for a while after it, the request "
        "may still reach the provider and capture, whatever a lookup said meanwhile."
    )
    checked_at = moment("When the reconciler last looked at it.")
    abandoned_at = moment(
        "When its order stopped wanting it (failed, cancelled, or retried with a new "
        "payment): from then on a capture on it is refunded."
    )
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PaymentQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="payment_amount_non_negative"),
        ]
        indexes = [
            models.Index(fields=["order", "-id"], name="payment_by_order"),
            # The reconciler's sweep (PaymentQuerySet.to_settle) reads only these rows.
            models.Index(
                fields=["checked_at", "id"],
                name="payment_abandoned_to_settle",
                condition=Q(abandoned_at__isnull=False, attempts__gt=0)
                & Q(status__in=sorted({*MAY_HOLD_CAPTURE, *CHARGEABLE})),
            ),
        ]

    def __str__(self) -> str:
        return f"payment {self.pk} ({self.status})"

    @property
    def reference(self) -> str:
        """What the charge is for, as the provider is told."""
        return f"order:{self.order_id}"

    @property
    def outcome_unknown(self) -> bool:
        """Only the provider can tell whether this charge is captured: one was requested and
        the last answer is missing (in doubt, a refund in doubt), or said "no charge" while a
        request may still land."""
        return self.status in (S.IN_DOUBT, S.REFUND_IN_DOUBT) or (
            self.attempts > 0 and self.status in CHARGEABLE
        )

    @property
    def settled(self) -> bool:
        """Its outcome is known for good: captured, declined or refunded."""
        return self.status in (S.CAPTURED, S.DECLINED, S.REFUNDED)
