"""The one way a charge is settled: a try, for any number of payments at once.

A try is counted before anything is sent (payments_count_tries), so a task cut short by its
time limit has spent it. Then every payment's request goes out at once, each on its own
connection and with its own idempotency key (PAYMENT_BATCH_CONCURRENCY at a time): the first
charge request of a payment never charged, a lookup by key for one charged before (an
earlier request may have captured although its answer was lost), and, once a lookup finds no
charge, the charge request again. The answers are recorded as they come back, a group at a
time (payments_record: a few statements per group whatever its size), and each group is
handed back at once: an order whose answer came does not wait for the slowest.

A group is the first answer and those that keep coming after it: it ends at a pause of
GROUP_GAP_SECONDS with no answer (the rest are slower: a hung or slow provider) or after
GROUP_MAX_SECONDS. A batch larger than PAYMENT_BATCH_CONCURRENCY goes out in waves, one
after another, and is still one group, its orders confirmed and pushed together.
"""

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from django.conf import settings

from core.checkpoints import checkpoint
from payments.gateway import (
    PaymentGatewayRejected,
    PaymentGatewayUnavailable,
    ProviderCharge,
    get_gateway,
)
from payments.models import Payment, PaymentStatus
from payments.services import (
    UNDECIDED,
    Answer,
    payments_claim_resends,
    payments_record,
)

S = PaymentStatus
# The answers recorded together: the first, and those that follow it with no pause longer
# than the gap, for no longer than the maximum (see the module's docstring).
GROUP_GAP_SECONDS = 0.25
GROUP_MAX_SECONDS = 1.0


@dataclass
class Tried:
    """One payment after its try: settled (captured, declined, ...), refused for good
    (`refused`: its charge request was refused and that was recorded; the order fails), or
    with no definitive answer this time (`error`: what went wrong)."""

    payment: Payment
    refused: str = ""
    error: str = ""


_pool: tuple[int, int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """The process's threads for requests to the provider (made anew in a forked child, or
    when PAYMENT_BATCH_CONCURRENCY changes)."""
    global _pool
    size = settings.PAYMENT_BATCH_CONCURRENCY
    with _pool_lock:
        if _pool is None or _pool[:2] != (os.getpid(), size):
            if _pool is not None and _pool[0] == os.getpid():
                _pool[2].shutdown(wait=False)
            _pool = (os.getpid(), size, ThreadPoolExecutor(size, thread_name_prefix="payments"))
        return _pool[2]


def _charge(payment: Payment) -> ProviderCharge:
    checkpoint("payment.charge.sending", payment_id=payment.pk)
    charge = get_gateway().create_charge(
        idempotency_key=payment.idempotency_key,
        amount=payment.amount,
        currency=payment.currency,
        reference=payment.reference,
    )
    checkpoint("payment.charge.answered", payment_id=payment.pk, status=charge.status)
    return charge


def _lookup(payment: Payment) -> ProviderCharge | None:
    return get_gateway().get_charge(idempotency_key=payment.idempotency_key)


def _answer(kind, payment: Payment, attempts: int, future: Future) -> Answer:
    try:
        return Answer(payment, kind, attempts, charge=future.result())
    except (PaymentGatewayUnavailable, PaymentGatewayRejected) as exc:
        return Answer(payment, kind, attempts, error=exc)


def payments_try(*, first: Sequence[Payment], again: Sequence[Payment]) -> Iterator[list[Tried]]:
    """Settle, or try to, each payment whose try was counted: `first` just claimed its first
    charge request, `again` was charged before (looked up first). Yields the payments a group
    at a time as their answers are recorded. Must run outside a transaction; a generator
    left early (the task's time limit) leaves the requests in flight to finish on their own,
    their answers unrecorded: the next try looks the charge up."""
    pool = _executor()
    pending: dict[Future, tuple[str, Payment, int]] = {}

    def send(kind: str, call: Callable, payment: Payment) -> None:
        pending[pool.submit(call, payment)] = (kind, payment, payment.attempts)

    for payment in first:
        send("charge", _charge, payment)
    for payment in again:
        send("lookup", _lookup, payment)
    while pending:
        done = _next_group(pending)
        answers = [_answer(*pending.pop(future), future) for future in done]
        recorded = payments_record(answers)
        not_found = [
            a.payment
            for a in answers
            if a.kind == "lookup"
            and a.payment.pk in recorded.moved
            and a.payment.status == S.NOT_CHARGED
        ]
        resent = payments_claim_resends(payments=not_found)
        for payment in resent:
            send("charge", _charge, payment)
        yield [_tried(a, recorded.refused) for a in answers if a.payment not in resent]


def _next_group(pending: dict[Future, tuple[str, Payment, int]]) -> set[Future]:
    """The next group of answers: waits for the first, then for more as long as they keep
    coming (no GROUP_GAP_SECONDS without one, GROUP_MAX_SECONDS in all)."""
    wait(pending, return_when=FIRST_COMPLETED)  # (every request has its deadline)
    ends = time.monotonic() + GROUP_MAX_SECONDS
    done = {future for future in pending if future.done()}
    while len(done) < len(pending):
        left = ends - time.monotonic()
        if left <= 0:
            break
        rest = [future for future in pending if future not in done]
        came, _ = wait(rest, timeout=min(GROUP_GAP_SECONDS, left))  # all, or the time
        if not came:
            break  # a pause: the rest are slower
        done |= came
    return done


def _tried(answer: Answer, refused: dict[int, str]) -> Tried:
    payment = answer.payment
    if payment.pk in refused:
        return Tried(payment, refused=refused[payment.pk])
    if payment.status not in UNDECIDED:
        return Tried(payment)
    if answer.error is not None:
        return Tried(payment, error=str(answer.error)[:2000])
    if answer.charge is not None:
        return Tried(payment, error=f"the payment service answered {answer.charge.status!r}")
    return Tried(payment, error="no charge yet; another charge request of ours is on its way")
