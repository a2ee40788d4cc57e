"""Charging many payments at once: the charge requests of a batch go out together, each on
its own connection and with its own idempotency key, and the statements before and after
them are set-based (a few per batch, not per payment). The outcome for each payment is what
payment_charge would have given it, with the same guards."""

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from core.checkpoints import checkpoint
from payments.gateway import (
    PaymentGatewayRejected,
    PaymentGatewayUnavailable,
    ProviderCharge,
    get_gateway,
)
from payments.models import ANSWER_REPLACES, Payment, PaymentStatus
from payments.services import PaymentRefused, payment_charge

S = PaymentStatus


@dataclass
class Charged:
    """Each payment as it now stands (CAPTURED, DECLINED, or no definitive answer this time),
    and those whose own charge request the provider refused outright (id -> reason)."""

    payments: list[Payment]
    refused: dict[int, str] = field(default_factory=dict)


_CLAIM_SQL = """
UPDATE payments_payment SET status = %s, attempts = 1, tries = tries + 1,
    last_attempt_at = %s, updated_at = %s
WHERE id IN ({ids}) AND status = %s AND attempts = 0
RETURNING id
"""


def _claim_first_attempts(payments: list[Payment]) -> set[int]:
    """One statement: the payments never charged become in doubt, their first attempt and
    try counted (from here on a charge may exist); those another worker claimed first are
    left out."""
    if not payments:
        return set()
    now = timezone.now()
    stamp = connection.ops.adapt_datetimefield_value(now)
    sql = _CLAIM_SQL.format(ids=", ".join(["%s"] * len(payments)))
    with connection.cursor() as cursor:
        cursor.execute(sql, [S.IN_DOUBT, stamp, stamp, *(p.pk for p in payments), S.PENDING])
        claimed = {pk for (pk,) in cursor.fetchall()}
    for payment in payments:
        if payment.pk in claimed:
            payment.status, payment.attempts = S.IN_DOUBT, 1
            payment.tries += 1
            payment.last_attempt_at = payment.updated_at = now
    return claimed


def _send(payment: Payment) -> ProviderCharge | Exception:
    """The charge request (in a thread of its own: no database here)."""
    checkpoint("payment.charge.sending", payment_id=payment.pk)
    try:
        charge = get_gateway().create_charge(
            idempotency_key=payment.idempotency_key,
            amount=payment.amount,
            currency=payment.currency,
            reference=payment.reference,
        )
    except (PaymentGatewayUnavailable, PaymentGatewayRejected) as exc:
        return exc
    checkpoint("payment.charge.answered", payment_id=payment.pk, status=charge.status)
    return charge


_RECORD_SQL = """
WITH answer(id, provider_reference, last_error) AS (VALUES {rows})
UPDATE payments_payment SET status = %s, provider_reference = answer.provider_reference,
    last_error = answer.last_error, updated_at = %s
FROM answer
WHERE payments_payment.id = answer.id AND payments_payment.status IN ({allowed}){guard}
RETURNING payments_payment.id
"""


def _record_many(
    to: str, rows: list[tuple[Payment, str, str]], *, allowed_from, attempts_guard: bool = False
) -> set[int]:
    """One statement: record `to` with each row's provider reference and last error, on the
    payments still in one of `allowed_from` (and, with `attempts_guard`, not claimed again
    since). Returns the ids recorded."""
    if not rows:
        return set()
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    allowed = sorted(allowed_from)
    values = ", ".join(["(CAST(%s AS bigint), %s, %s)"] * len(rows))
    params: list[Any] = [v for payment, ref, error in rows for v in (payment.pk, ref, error)]
    guard = ""
    if attempts_guard:
        guard = " AND payments_payment.attempts = CASE payments_payment.id {} END".format(
            " ".join(["WHEN %s THEN %s"] * len(rows))
        )
    sql = _RECORD_SQL.format(rows=values, allowed=", ".join(["%s"] * len(allowed)), guard=guard)
    params += [to, now, *allowed]
    if attempts_guard:
        params += [v for payment, _, _ in rows for v in (payment.pk, payment.attempts)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {pk for (pk,) in cursor.fetchall()}


def payments_charge(*, payments: Sequence[Payment]) -> Charged:
    """One try at settling each payment's charge; must run outside a transaction.

    Payments never charged are claimed in one statement and their charge requests sent at
    once (PAYMENT_BATCH_CONCURRENCY at a time); the answers are recorded in a statement per
    kind of answer, each guarded as payment_charge's are. Payments charged before (retries:
    looked up first) and any a racing worker touched take the single path, one by one.
    """
    payments = list(payments)
    for payment in payments:
        checkpoint("payment.charge.start", payment_id=payment.pk)
    claimed = _claim_first_attempts([p for p in payments if p.attempts == 0])
    fresh = [p for p in payments if p.pk in claimed]
    result = Charged(payments=payments)
    if len(fresh) == 1:
        _record(fresh, {fresh[0].pk: _send(fresh[0])}, result)
    elif fresh:
        workers = min(len(fresh), settings.PAYMENT_BATCH_CONCURRENCY)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            answers = dict(zip((p.pk for p in fresh), pool.map(_send, fresh), strict=True))
        _record(fresh, answers, result)
    for payment in payments:
        if payment.pk in claimed:
            continue
        try:
            payment_charge(payment=payment)
        except PaymentRefused as exc:
            result.refused[payment.pk] = exc.message
    return result


def _record(fresh: list[Payment], answers: dict, result: Charged) -> None:
    by_kind: dict[str, list] = {"captured": [], "declined": [], "refused": [], "error": []}
    for payment in fresh:
        answer = answers[payment.pk]
        if isinstance(answer, ProviderCharge) and answer.status in ("captured", "declined"):
            by_kind[answer.status].append(
                (payment, answer.provider_reference, answer.decline_reason or "")
            )
        elif isinstance(answer, PaymentGatewayRejected):
            by_kind["refused"].append((payment, "", str(answer)[:2000]))
        else:  # no answer, or a "refunded" that this attempt cannot have made: ask later
            by_kind["error"].append((payment, payment.provider_reference, str(answer)[:2000]))
    recorded: set[int] = set()
    for kind, to in (("captured", S.CAPTURED), ("declined", S.DECLINED)):
        recorded |= _record_many(to, by_kind[kind], allowed_from=ANSWER_REPLACES[to])
    refused = _record_many(
        S.NOT_CHARGED, by_kind["refused"], allowed_from=(S.IN_DOUBT,), attempts_guard=True
    )
    recorded |= refused
    _record_many(S.IN_DOUBT, by_kind["error"], allowed_from=(S.IN_DOUBT,))
    for kind, rows in by_kind.items():
        for payment, reference, error in rows:
            if kind == "refused":
                result.refused[payment.pk] = f"The payment service refused the charge: {error}"
            if payment.pk in recorded:
                payment.status = {"captured": S.CAPTURED, "declined": S.DECLINED}.get(
                    kind, S.NOT_CHARGED
                )
                payment.provider_reference, payment.last_error = reference, error
            elif kind != "error":
                payment.refresh_from_db()  # another actor recorded something first
            else:
                payment.last_error = error
