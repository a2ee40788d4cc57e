"""Payment use cases. Every change of a payment's status is made here, by an UPDATE guarded
by the statuses it may replace (payments.models: CHARGEABLE, ANSWER_REPLACES), so two actors
working on one payment never overwrite what the other has learned: a charge attempt never
puts a capture back in doubt, and a late "captured" never undoes a refund under way. The
writes are set-based: one statement for each kind of answer, however many payments.

Charging, looking up and refunding talk HTTP: they run outside any database transaction (the
HTTP client refuses to call inside one) and write their own short statements. The times that
other machines compare (`last_attempt_at`, `abandoned_at`) are the database's.
"""

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from django.db import connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from core.clock import at, read
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
# No definitive outcome yet: a try (a charge request, or a lookup first) may settle these.
UNDECIDED = frozenset({S.PENDING, S.IN_DOUBT, S.NOT_CHARGED})


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


def payments_abandon(*, payment_ids: Collection[int]) -> None:
    """Their orders no longer want these payments (failed, cancelled, or retried with a new
    one): from now on the reconciler refunds a capture found on them, and one never charged
    is voided (a worker's claim of its first charge request, guarded by "pending and no
    attempt", can no longer take it). One statement, in the caller's transaction; the first
    abandonment's time is kept."""
    never_charged = Q(status=S.PENDING, attempts=0)
    Payment.objects.filter(Q(abandoned_at__isnull=True) | never_charged, pk__in=payment_ids).update(
        abandoned_at=Coalesce("abandoned_at", Now()),
        status=Case(When(never_charged, then=Value(S.VOIDED)), default=F("status")),
        updated_at=timezone.now(),
    )


# --- recording what the provider said ---------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What came back for one payment: the provider's record of its charge (`charge`; None
    with no `error`: no charge for its key), or no definitive answer (`error`: the
    gateway's PaymentGatewayUnavailable, or PaymentGatewayRejected for a refusal), to a
    charge request, a lookup or a refund sent while the payment had `attempts` attempts."""

    payment: Payment
    kind: Literal["charge", "lookup", "refund"]
    attempts: int
    charge: ProviderCharge | None = None
    error: Exception | None = None

    @property
    def refused(self) -> bool:
        return isinstance(self.error, PaymentGatewayRejected)


@dataclass
class Recorded:
    """What recording a set of answers did: the payments whose status an answer set, and
    those whose charge request was refused for good (id -> the refusal)."""

    moved: set[int] = field(default_factory=set)
    refused: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Write:
    """One kind of status change: to `status`, from any of `allowed_from`, and (with
    `same_attempts`) only if no other charge request was claimed since the answer's went
    out."""

    status: str
    allowed_from: frozenset[str]
    same_attempts: bool = False


_NOT_FOUND = _Write(S.NOT_CHARGED, frozenset({S.PENDING, S.IN_DOUBT, S.NOT_CHARGED}), True)
_REFUSED = _Write(S.NOT_CHARGED, frozenset({S.IN_DOUBT}), True)


def _write_for(answer: Answer) -> _Write | None:
    """The status change an answer makes, None for none (only its error is kept).

    A charge request refused outright is final only when it was the payment's first: a
    refusal of a later one may be the provider's "another request with this key is in
    progress" (some answer 400 or 422), our own earlier request still on its way; it is no
    answer, and the next try looks the charge up."""
    if answer.charge is not None:
        to = {"captured": S.CAPTURED, "declined": S.DECLINED, "refunded": S.REFUNDED}[
            answer.charge.status
        ]
        if to == S.REFUNDED and answer.kind == "charge":
            return None  # a "refunded" that this charge request cannot have made: ask later
        if to == S.REFUNDED:  # told once: by the answer that moves it into refunded
            return _Write(to, ANSWER_REPLACES[to] - {S.REFUNDED})
        return _Write(to, ANSWER_REPLACES[to])
    if answer.error is None:
        return _NOT_FOUND if answer.kind == "lookup" else None
    if answer.kind == "charge" and answer.refused and answer.attempts == 1:
        return _REFUSED
    return None


_RECORD_SQL = """
WITH answer(id, provider_reference, last_error, attempts) AS (VALUES {rows})
UPDATE payments_payment SET status = %s,
    provider_reference = COALESCE(answer.provider_reference, payments_payment.provider_reference),
    last_error = COALESCE(answer.last_error, payments_payment.last_error), updated_at = %s
FROM answer
WHERE payments_payment.id = answer.id AND payments_payment.status IN ({allowed}){attempts}
RETURNING payments_payment.id
"""
_ERRORS_SQL = """
WITH answer(id, last_error) AS (VALUES {rows})
UPDATE payments_payment SET last_error = answer.last_error, updated_at = %s
FROM answer WHERE payments_payment.id = answer.id
"""
_ROW = "(CAST(%s AS bigint), CAST(%s AS varchar), CAST(%s AS text), CAST(%s AS integer))"


def _error_text(answer: Answer) -> str:
    return str(answer.error)[:2000]


def _reference_and_error(answer: Answer) -> tuple[str | None, str | None]:
    """The provider reference and last error an answer leaves (None: keep the row's)."""
    if answer.charge is not None:
        return answer.charge.provider_reference, answer.charge.decline_reason or ""
    if answer.error is not None:
        return ("" if answer.refused else None), _error_text(answer)
    return None, None


def payments_record(answers: Sequence[Answer]) -> Recorded:
    """Record the provider's answers: a statement per kind of status change (each guarded as
    `_write_for` says), one for the errors of the rest, and the order.refunded events of
    refunds recorded now, in one transaction. The payments are updated in place: as recorded,
    or as the row now holds where another actor recorded something first."""
    recorded = Recorded()
    if not answers:
        return recorded
    groups: dict[_Write, list[Answer]] = {}
    errors: list[Answer] = []
    for answer in answers:
        write = _write_for(answer)
        if write is not None:
            groups.setdefault(write, []).append(answer)
        elif answer.error is not None:
            errors.append(answer)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic():
        for write, members in groups.items():
            moved = _record_group(write, members, now)
            recorded.moved |= moved
            if write == _REFUSED:
                recorded.refused.update(
                    (a.payment.pk, f"The payment service refused the charge: {a.error}")
                    for a in members
                    if a.payment.pk in moved
                )
            if write.status == S.REFUNDED and moved and EventType.ORDER_REFUNDED in wanted_types():
                _write_refunded_events([a.payment for a in members if a.payment.pk in moved])
        if errors:
            with connection.cursor() as cursor:
                cursor.execute(
                    _ERRORS_SQL.format(rows=", ".join(["(CAST(%s AS bigint), %s)"] * len(errors))),
                    [v for a in errors for v in (a.payment.pk, _error_text(a))] + [now],
                )
    _update_instances(answers, groups, recorded)
    return recorded


def _record_group(write: _Write, members: list[Answer], now: Any) -> set[int]:
    params: list[Any] = []
    for answer in members:
        reference, error = _reference_and_error(answer)
        params += [answer.payment.pk, reference, error, answer.attempts]
    allowed = sorted(write.allowed_from)
    attempts = " AND payments_payment.attempts = answer.attempts" if write.same_attempts else ""
    sql = _RECORD_SQL.format(
        rows=", ".join([_ROW] * len(members)),
        allowed=", ".join(["%s"] * len(allowed)),
        attempts=attempts,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, write.status, now, *allowed])
        return {pk for (pk,) in cursor.fetchall()}


def _update_instances(
    answers: Sequence[Answer], groups: Mapping[_Write, list[Answer]], recorded: Recorded
) -> None:
    written = {a.payment.pk: write for write, members in groups.items() for a in members}
    stale = []
    for answer in answers:
        payment = answer.payment
        write = written.get(payment.pk)
        reference, error = _reference_and_error(answer)
        if write is not None and payment.pk not in recorded.moved:
            stale.append(payment)  # another actor recorded something first
            continue
        if write is not None:
            payment.status = write.status
        if reference is not None:
            payment.provider_reference = reference
        if error is not None:
            payment.last_error = error
    if stale:
        current = {p.pk: p for p in Payment.objects.filter(pk__in=[p.pk for p in stale])}
        for payment in stale:
            for name in ("status", "provider_reference", "last_error", "attempts", "tries"):
                setattr(payment, name, getattr(current[payment.pk], name))


def _write_refunded_events(payments: Sequence[Payment]) -> None:
    """order.refunded, with each refund's figures, in the refund's own transaction."""
    order_of = dict(
        Payment.objects.filter(pk__in=[p.pk for p in payments]).values_list("pk", "order__id")
    )
    outbox_write(
        EventType.ORDER_REFUNDED,
        {
            order_of[p.pk]: {
                "payment_id": p.pk,
                "amount": str(p.amount),
                "currency": p.currency,
                "provider_reference": p.provider_reference,
            }
            for p in payments
        },
    )


# --- tries: the write ahead of every charge request and lookup ---------------------------------

# Both statements judge each row by the attempts the caller read (`seen`): a row another worker
# claimed an attempt of since is left alone, and is not the caller's.
_COUNT_SQL = """
UPDATE payments_payment SET tries = tries + 1,
    status = CASE WHEN attempts = 0 THEN %s ELSE status END,
    last_attempt_at = CASE WHEN attempts = 0 THEN {now} ELSE last_attempt_at END,
    attempts = CASE WHEN attempts = 0 THEN 1 ELSE attempts END, updated_at = {now}
WHERE id IN ({ids}) AND status IN ({allowed}) AND attempts = CASE id {seen} END
RETURNING id, status, attempts, tries, last_attempt_at
"""
_RESEND_SQL = """
UPDATE payments_payment SET status = %s, attempts = attempts + 1, last_attempt_at = {now},
    updated_at = {now}
WHERE id IN ({ids}) AND status IN ({allowed}) AND attempts = CASE id {seen} END
RETURNING id, status, attempts, tries, last_attempt_at
"""


def _claim(sql: str, payments: Sequence[Payment], allowed: Collection[str]) -> list[Payment]:
    """Run one of the claims above for `payments` (those still in one of `allowed`); returns
    those it applied to, their instances updated as the rows now are."""
    if not payments:
        return []
    now_sql, now_params = at().sql()
    sql = sql.format(
        now=now_sql,
        ids=", ".join(["%s"] * len(payments)),
        allowed=", ".join(["%s"] * len(allowed)),
        seen=" ".join(["WHEN %s THEN %s"] * len(payments)),
    )
    params = [
        S.IN_DOUBT,
        *now_params,
        *now_params,
        *(p.pk for p in payments),
        *sorted(allowed),
        *(v for p in payments for v in (p.pk, p.attempts)),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = {pk: rest for pk, *rest in cursor.fetchall()}
    for payment in payments:
        if payment.pk in rows:
            payment.status, payment.attempts, payment.tries, last = rows[payment.pk]
            payment.last_attempt_at = read(last)
    return [p for p in payments if p.pk in rows]


def payments_count_tries(*, payments: Sequence[Payment]) -> list[Payment]:
    """One statement, before anything is sent: each payment's try is counted (`tries`, the
    retry budget), and a payment never charged claims its first charge request (from here on
    a charge may exist: in doubt, `attempts` 1, `last_attempt_at` now). Only payments still
    undecided and not claimed by another worker since they were read are counted; returns
    those, updated. A try counted here is spent even if the task dies before it is sent."""
    return _claim(_COUNT_SQL, payments, UNDECIDED)


def payments_claim_resends(*, payments: Sequence[Payment]) -> list[Payment]:
    """One statement: the payments a lookup found no charge for claim another charge request
    (in doubt again, one more attempt, sent now), only if no other attempt was claimed since
    the lookup went out; returns those claimed, updated."""
    return _claim(_RESEND_SQL, payments, CHARGEABLE)


# --- one payment: the reconciler's and the operators' questions ---------------------------------


def _move(payment: Payment, *, to: str, allowed_from: Collection[str], **fields) -> bool:
    """Set `to` (and `fields`) only if the row's status is still one of `allowed_from`;
    otherwise the instance is reloaded with what the row holds. True when it moved."""
    now = timezone.now()
    moved = Payment.objects.filter(pk=payment.pk, status__in=allowed_from).update(
        status=to, updated_at=now, **fields
    )
    if not moved:
        payment.refresh_from_db()
        return False
    payment.status, payment.updated_at = to, now
    for name, value in fields.items():
        setattr(payment, name, value)
    return True


def payment_lookup(*, payment: Payment) -> Payment:
    """Ask the provider for the charge by its key and record what it says (payments_record):
    no charge -> NOT_CHARGED, recorded only if no charge request was sent since we asked (a
    request may still be on its way, and may yet capture; its window is kept by
    `last_attempt_at`). No definitive answer, or a refusal -> PaymentInDoubt, the status
    unchanged. Safe to repeat."""
    answer = _ask(
        payment, "lookup", lambda: get_gateway().get_charge(idempotency_key=payment.idempotency_key)
    )
    payments_record([answer])
    if answer.error is not None:
        raise PaymentInDoubt(str(answer.error)) from answer.error
    return payment


def _ask(payment: Payment, kind: Literal["charge", "lookup", "refund"], call) -> Answer:
    """One request to the provider about `payment`, as an Answer (no database here)."""
    attempts = payment.attempts
    try:
        return Answer(payment, kind, attempts, charge=call())
    except (PaymentGatewayUnavailable, PaymentGatewayRejected) as exc:
        return Answer(payment, kind, attempts, error=exc)


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
    answer = _ask(
        payment, "refund", lambda: get_gateway().refund(idempotency_key=payment.idempotency_key)
    )
    if answer.refused:
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
                last_error=_error_text(answer),
            )
        raise PaymentRefused(
            f"The payment service refused the refund: {answer.error}"
        ) from answer.error
    payments_record([answer])
    if answer.error is not None:
        raise PaymentInDoubt(str(answer.error)) from answer.error
    return payment


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
