"""Payment use cases. Every change of a payment's status is made here, by an UPDATE guarded
by the statuses it may replace (payments.models: CHARGEABLE, ANSWER_REPLACES), so two actors
working on one payment never overwrite what the other has learned: a charge attempt never
puts a capture back in doubt, and a late "captured" never undoes a refund under way.

Charging, looking up and refunding talk HTTP: they run outside any database transaction (the
HTTP client refuses to call inside one) and write their own short statements.
"""

import uuid
from collections.abc import Collection
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.checkpoints import checkpoint
from core.errors import DomainError
from payments.gateway import (
    PaymentGatewayRejected,
    PaymentGatewayUnavailable,
    ProviderCharge,
    get_gateway,
)
from payments.models import ANSWER_REPLACES, CHARGEABLE, Payment, PaymentStatus
from webhooks.models import EventType
from webhooks.outbox import outbox_write, wanted_types

S = PaymentStatus


class PaymentInDoubt(DomainError):
    """The provider gave no definitive answer; the charge (or its refund) may exist. Retry,
    then look it up."""

    code = "payment_in_doubt"
    status_code = 503


class PaymentRefused(DomainError):
    """The provider refused the request outright (a 4xx that means no): nothing was done."""

    code = "payment_refused"
    status_code = 502


def payment_new(*, order_uid: uuid.UUID, amount: Decimal, currency: str = "USD") -> Payment:
    """A pending payment of the order (by its uid), its idempotency key fixed for its whole
    life; not saved yet (the order's creation inserts it with the order)."""
    return Payment(order_id=order_uid, amount=amount, currency=currency)


def payment_create(*, order_uid: uuid.UUID, amount: Decimal, currency: str = "USD") -> Payment:
    """payment_new, saved in the caller's transaction; the order row may be inserted after
    it."""
    payment = payment_new(order_uid=order_uid, amount=amount, currency=currency)
    payment.save(force_insert=True)
    return payment


def payments_abandon(*, payment_ids: Collection[int], now: datetime) -> None:
    """Their orders no longer want these payments (failed, cancelled, or retried with a new
    one): from now on the reconciler refunds a capture found on them, and one never charged
    is voided (a worker's claim of its first charge request, guarded by "pending and no
    attempt", can no longer take it). One statement, in the caller's transaction; the first
    abandonment's time is kept."""
    never_charged = Q(status=S.PENDING, attempts=0)
    Payment.objects.filter(Q(abandoned_at__isnull=True) | never_charged, pk__in=payment_ids).update(
        abandoned_at=Coalesce("abandoned_at", Value(now)),
        status=Case(When(never_charged, then=Value(S.VOIDED)), default=F("status")),
        updated_at=now,
    )


def _move(payment: Payment, *, to: str, allowed_from: Collection[str], **fields) -> bool:
    """Set `to` (and `fields`) only if the row's status is still one of `allowed_from`;
    otherwise the instance is reloaded with what the row holds. True when it moved."""
    guard = fields.pop("guard", {})
    now = timezone.now()
    moved = Payment.objects.filter(pk=payment.pk, status__in=allowed_from, **guard).update(
        status=to, updated_at=now, **fields
    )
    if not moved:
        payment.refresh_from_db()
        return False
    payment.status, payment.updated_at = to, now
    for name, value in fields.items():
        if not hasattr(value, "resolve_expression"):  # an F() is left to the caller
            setattr(payment, name, value)
    return True


def _record_answer(payment: Payment, charge: ProviderCharge) -> Payment:
    to = {"captured": S.CAPTURED, "declined": S.DECLINED, "refunded": S.REFUNDED}[charge.status]
    # A refund is told once: only the answer that moves the payment into `refunded` writes
    # the event, not a second caller's answer finding it refunded already.
    allowed = ANSWER_REPLACES[to] - {S.REFUNDED} if to == S.REFUNDED else ANSWER_REPLACES[to]
    with transaction.atomic():
        moved = _move(
            payment,
            to=to,
            allowed_from=allowed,
            provider_reference=charge.provider_reference,
            last_error=charge.decline_reason or "",
        )
        if moved and to == S.REFUNDED and EventType.ORDER_REFUNDED in wanted_types():
            _record_refunded_event(payment)
    return payment


def _record_refunded_event(payment: Payment) -> None:
    """order.refunded, with the refund's figures, in the refund's own transaction."""
    order_id = Payment.objects.filter(pk=payment.pk).values_list("order__id", flat=True).get()
    facts = {
        "payment_id": payment.pk,
        "amount": str(payment.amount),
        "currency": payment.currency,
        "provider_reference": payment.provider_reference,
    }
    outbox_write(EventType.ORDER_REFUNDED, {order_id: facts})


def _record_error(payment: Payment, error: Exception) -> None:
    """Keep what went wrong for operators; the status stays what it is."""
    payment.last_error = str(error)[:2000]
    Payment.objects.filter(pk=payment.pk).update(
        last_error=payment.last_error, updated_at=timezone.now()
    )


def payment_lookup(*, payment: Payment) -> Payment:
    """Ask the provider for the charge by its key and record what it says.

    Not found -> NOT_CHARGED, recorded only if no charge request was sent since we asked (a
    request may still be on its way, and may yet capture; its window is kept by
    `last_attempt_at`). No definitive answer, or a refusal -> PaymentInDoubt, the status
    unchanged. Safe to repeat."""
    seen_attempts = payment.attempts
    try:
        charge = get_gateway().get_charge(idempotency_key=payment.idempotency_key)
    except (PaymentGatewayUnavailable, PaymentGatewayRejected) as exc:
        _record_error(payment, exc)
        raise PaymentInDoubt(str(exc)) from exc
    if charge is None:
        _move(
            payment,
            to=S.NOT_CHARGED,
            allowed_from=(S.PENDING, S.IN_DOUBT, S.NOT_CHARGED),
            guard={"attempts": seen_attempts},
        )
        return payment
    return _record_answer(payment, charge)


def _claim_attempt(payment: Payment, *, count_try: bool) -> bool:
    """Record that a charge request is about to be sent (from here on a charge may exist):
    one statement, and only if no other attempt was claimed since we read the payment."""
    now = timezone.now()
    fields = {"attempts": payment.attempts + 1, "last_attempt_at": now}
    if count_try:
        fields["tries"] = F("tries") + 1
    if not _move(
        payment,
        to=S.IN_DOUBT,
        allowed_from=CHARGEABLE,
        guard={"attempts": payment.attempts},
        **fields,
    ):
        return False
    if count_try:
        payment.tries += 1
    return True


def _count_try(payment: Payment) -> None:
    Payment.objects.filter(pk=payment.pk).update(tries=F("tries") + 1, updated_at=timezone.now())
    payment.tries += 1


def payment_charge(*, payment: Payment) -> Payment:
    """One try at settling the charge, counted in `tries` whatever comes of it. Charges at
    most once, whatever happens: every request carries the payment's idempotency key.

    Returns the payment as it now stands: CAPTURED or DECLINED, or anything else for "no
    definitive answer this time" (in doubt, or another worker's request on its way): try
    again later, never assume either way. Raises PaymentRefused when the provider refused
    this very request outright (a 4xx that means no): nothing was charged, and it is final.
    A payment that was charged before is first looked up by its key (an earlier request may
    have captured although its answer was lost). A payment already settled is returned as
    it is. Must run outside a transaction.
    """
    checkpoint("payment.charge.start", payment_id=payment.pk)
    if payment.status not in (S.PENDING, S.IN_DOUBT, S.NOT_CHARGED):
        return payment  # captured, declined, refunded, or a refund under way
    if payment.attempts == 0:
        if not _claim_attempt(payment, count_try=True):
            return payment
    else:
        _count_try(payment)
        try:
            payment_lookup(payment=payment)
        except PaymentInDoubt:
            return payment
        if payment.status != S.NOT_CHARGED or not _claim_attempt(payment, count_try=False):
            return payment  # settled, or another worker's request is on its way

    checkpoint("payment.charge.sending", payment_id=payment.pk)
    try:
        charge = get_gateway().create_charge(
            idempotency_key=payment.idempotency_key,
            amount=payment.amount,
            currency=payment.currency,
            reference=payment.reference,
        )
    except PaymentGatewayUnavailable as exc:
        _record_error(payment, exc)
        return payment
    except PaymentGatewayRejected as exc:
        # Refused outright (a 4xx that means no): nothing was charged, and the same request
        # would be refused again, so it is final.
        _move(
            payment,
            to=S.NOT_CHARGED,
            allowed_from=(S.IN_DOUBT,),
            guard={"attempts": payment.attempts},
            last_error=str(exc)[:2000],
        )
        raise PaymentRefused(f"The payment service refused the charge: {exc}") from exc
    checkpoint("payment.charge.answered", payment_id=payment.pk, status=charge.status)
    return _record_answer(payment, charge)


def payment_refund(*, payment: Payment) -> Payment:
    """Refund a captured charge by its key (idempotent at the provider); returns it refunded.
    Must run outside a transaction.

    The payment is marked REFUND_IN_DOUBT before the call: from then on the charge may be
    refunded. No answer -> raises PaymentInDoubt, the payment left REFUND_IN_DOUBT; a refusal
    -> raises PaymentRefused, the payment as it was (nothing was refunded). A payment that
    holds no capture as far as we know (declined, not charged) is returned unchanged."""
    if payment.status not in (S.CAPTURED, S.REFUND_IN_DOUBT):
        return payment
    before = payment.status
    if not _move(payment, to=S.REFUND_IN_DOUBT, allowed_from=(S.CAPTURED, S.REFUND_IN_DOUBT)):
        return payment_refund(payment=payment)  # judged again from what the row holds now
    try:
        charge = get_gateway().refund(idempotency_key=payment.idempotency_key)
    except PaymentGatewayUnavailable as exc:
        _record_error(payment, exc)
        raise PaymentInDoubt(str(exc)) from exc
    except PaymentGatewayRejected as exc:
        # Some providers refuse a repeated refund ("already refunded"): ask before believing
        # that nothing was refunded.
        try:
            payment_lookup(payment=payment)
        except PaymentInDoubt:
            pass  # left REFUND_IN_DOUBT: whoever comes next asks again
        else:
            if payment.status == S.REFUNDED:
                return payment
            _move(
                payment,
                to=before,
                allowed_from=(S.REFUND_IN_DOUBT,),
                last_error=str(exc)[:2000],
            )
        raise PaymentRefused(f"The payment service refused the refund: {exc}") from exc
    return _record_answer(payment, charge)


def payment_settle(*, payment: Payment) -> bool:
    """Make sure a charge nobody wants any more is not kept: the one refund-if-captured path,
    for the workflow and the reconciler alike. A payment whose outcome only the provider
    knows is looked up first; a capture is refunded. True when it was refunded now; False
    when there is nothing to refund (never charged, declined, not charged, refunded).
    Raises PaymentInDoubt or PaymentRefused. Must run outside a transaction."""
    if payment.outcome_unknown:
        payment_lookup(payment=payment)
    if payment.status not in (S.CAPTURED, S.REFUND_IN_DOUBT):
        return False
    payment_refund(payment=payment)
    return payment.status == S.REFUNDED


def payment_checked(*, payment: Payment, now: datetime) -> None:
    """The reconciler is looking at this payment now (it goes to the back of its queue)."""
    Payment.objects.filter(pk=payment.pk).update(checked_at=now)
    payment.checked_at = now


def payment_at_provider(*, payment: Payment) -> str | None:
    """What the provider holds for the payment's key (captured, declined, refunded), None for
    no charge; records nothing (the audit's question). Raises PaymentInDoubt when it does not
    answer."""
    try:
        charge = get_gateway().get_charge(idempotency_key=payment.idempotency_key)
    except (PaymentGatewayUnavailable, PaymentGatewayRejected) as exc:
        raise PaymentInDoubt(str(exc)) from exc
    return charge.status if charge else None
