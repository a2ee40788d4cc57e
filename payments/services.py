"""Payment use cases. Charging talks HTTP, so it must run OUTSIDE any database transaction:
a row lock or an open transaction must never wait on the network."""

from collections.abc import Collection
from decimal import Decimal

from django.db.models import F
from django.utils import timezone

from core.checkpoints import checkpoint
from core.errors import DomainError
from payments.gateway import (
    PaymentGatewayRejected,
    PaymentGatewayUnavailable,
    ProviderCharge,
    get_gateway,
)
from payments.models import Payment, PaymentStatus

SETTLED = (PaymentStatus.CAPTURED, PaymentStatus.DECLINED, PaymentStatus.REFUNDED)


class PaymentInDoubt(DomainError):
    """The provider gave no definitive answer; the charge may exist. Retry, then look it up."""

    code = "payment_in_doubt"
    status_code = 503


def payment_create(*, reference: str, amount: Decimal, currency: str = "USD") -> Payment:
    """A pending payment with its idempotency key fixed for its whole life."""
    return Payment.objects.create(reference=reference, amount=amount, currency=currency)


def _record(payment: Payment, charge: ProviderCharge) -> Payment:
    status = {
        "captured": PaymentStatus.CAPTURED,
        "declined": PaymentStatus.DECLINED,
        "refunded": PaymentStatus.REFUNDED,
    }[charge.status]
    payment.status = status
    payment.provider_reference = charge.provider_reference
    payment.last_error = charge.decline_reason or ""
    payment.save(update_fields=["status", "provider_reference", "last_error", "updated_at"])
    return payment


def _record_error(payment: Payment, error: Exception) -> None:
    payment.last_error = str(error)[:2000]
    Payment.objects.filter(pk=payment.pk).update(
        last_error=payment.last_error, updated_at=timezone.now()
    )


def payment_lookup(*, payment: Payment) -> Payment:
    """Ask the provider for the charge by its key and record what it says.

    Not found -> NOT_CHARGED (a later charge with the same key is still possible, and still
    single). No answer -> raises PaymentInDoubt, the payment unchanged. Safe to repeat."""
    try:
        charge = get_gateway().get_charge(idempotency_key=payment.idempotency_key)
    except PaymentGatewayUnavailable as exc:
        _record_error(payment, exc)
        raise PaymentInDoubt(str(exc)) from exc
    if charge is None:
        payment.status = PaymentStatus.NOT_CHARGED
        payment.save(update_fields=["status", "updated_at"])
        return payment
    return _record(payment, charge)


def payment_charge(*, payment: Payment) -> Payment:
    """Charge once, whatever happens. Returns the payment CAPTURED or DECLINED (or
    NOT_CHARGED when the provider refused the request itself), or raises PaymentInDoubt when
    the provider gave no answer (retry later; never assume either way).

    A payment that was attempted before is first looked up by its key: an earlier attempt
    may have charged even though its answer was lost. Must run outside a transaction.
    """
    checkpoint("payment.charge.start", payment_id=payment.pk)
    if payment.status in SETTLED:
        return payment
    if payment.attempts:
        payment = payment_lookup(payment=payment)
        if payment.status in SETTLED:
            return payment

    # Record the attempt before the call: from here on a charge may exist.
    Payment.objects.filter(pk=payment.pk).update(
        attempts=F("attempts") + 1, status=PaymentStatus.IN_DOUBT, updated_at=timezone.now()
    )
    payment.attempts += 1
    payment.status = PaymentStatus.IN_DOUBT
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
        raise PaymentInDoubt(str(exc)) from exc
    except PaymentGatewayRejected as exc:
        # Refused outright (a 4xx other than a decline): nothing was charged, and the same
        # request will be refused again, so it is final.
        payment.status = PaymentStatus.NOT_CHARGED
        payment.last_error = str(exc)[:2000]
        payment.save(update_fields=["status", "last_error", "updated_at"])
        return payment
    checkpoint("payment.charge.answered", payment_id=payment.pk, status=charge.status)
    return _record(payment, charge)


def payment_refund(*, payment: Payment) -> Payment:
    """Refund a captured charge by its key. Idempotent at the provider. Must run outside a
    transaction.

    The payment is marked REFUND_IN_DOUBT before the call: from then on the charge may be
    refunded, and whoever finds it so (say, before shipping the order) asks the provider. No
    answer -> raises PaymentInDoubt, the payment left REFUND_IN_DOUBT; a refusal -> raises
    PaymentGatewayRejected, the payment as it was (nothing was refunded)."""
    before = payment.status
    Payment.objects.filter(pk=payment.pk).update(
        status=PaymentStatus.REFUND_IN_DOUBT, updated_at=timezone.now()
    )
    payment.status = PaymentStatus.REFUND_IN_DOUBT
    try:
        charge = get_gateway().refund(idempotency_key=payment.idempotency_key)
    except PaymentGatewayUnavailable as exc:
        _record_error(payment, exc)
        raise PaymentInDoubt(str(exc)) from exc
    except PaymentGatewayRejected:
        payment.status = before
        payment.save(update_fields=["status", "updated_at"])
        raise
    return _record(payment, charge)


def payment_refund_if_captured(*, payment: Payment, look_up: Collection[str]) -> bool:
    """Refund the charge if the provider holds a capture; True when it was refunded now.
    A payment whose status is in `look_up` is first looked up by its key (its last answer
    may have been lost). Raises PaymentInDoubt when the provider does not answer. Must run
    outside a transaction."""
    if payment.status in look_up:
        payment = payment_lookup(payment=payment)
    if payment.status != PaymentStatus.CAPTURED:
        return False
    payment_refund(payment=payment)
    return True
