"""`Idempotency-Key` on order creation (docs/DESIGN.md, "REST API"), per user.

A request with a key first claims it in its own short, committed transaction, so every
concurrent request sees the claim: the INSERT that loses the unique race reads the winner's
row instead. The work then runs in one transaction with the completion of the claim, so the
order and the answer to replay commit together or not at all. Answers:

- same key, same request, completed: the stored answer is replayed (status, body, Location);
- same key, another request: IdempotencyKeyReused (422);
- same key, same request, still in flight: IdempotencyKeyInUse (409). A claim in flight
  longer than IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS was abandoned (a crashed request) and is
  retaken; the request that held it can no longer complete it, so it creates nothing.

Only accepted (2xx) answers are kept. Any other answer released the claim: the request changed
nothing, so sending it again (or a corrected one) with the same key is safe and simply runs.
Keys are kept IDEMPOTENCY_KEY_TTL_HOURS and then purged by celery-beat.
"""

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import Conflict, DomainError
from orders.models import IdempotencyKey, IdempotencyKeyState, Order

KEY_MAX_LENGTH = 255


class IdempotencyKeyInUse(Conflict):
    code = "idempotency_key_in_use"
    default_message = (
        "A request with this Idempotency-Key is still being processed; retry in a moment."
    )


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    status_code = 422
    default_message = "This Idempotency-Key was already used with a different request."


class IdempotencyClaimLost(IdempotencyKeyInUse):
    default_message = (
        "This request took too long and its Idempotency-Key was taken over by a retry; "
        "it created nothing."
    )


@dataclass(frozen=True)
class Claim:
    """The right to run the request for a key, held by one request (its token)."""

    record_id: int
    token: uuid.UUID


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as stored and replayed: status, rendered JSON body, headers."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


def request_fingerprint(*, method: str, operation: str, body: Any) -> str:
    """SHA-256 of the method, the operation (not the path: the spec's `/orders/create` and
    `/api/orders/` are one operation) and the body as canonical JSON (sorted keys, no
    whitespace), so formatting and key order do not make two requests different."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{method}\n{operation}\n{canonical}".encode()).hexdigest()


def idempotency_claim(*, user, key: str, fingerprint: str) -> Claim | Answer:
    """Claim `key` for this request: a Claim to go ahead, or the stored Answer to replay.
    Raises IdempotencyKeyReused or IdempotencyKeyInUse.

    Each write is its own transaction (call it outside one, or concurrent requests cannot see
    the claim). Of concurrent callers exactly one gets the claim: the INSERT is decided by the
    unique (user, key) constraint, a retake by a conditional UPDATE on the token it read.
    """
    token = uuid.uuid4()
    for _ in range(3):
        now = timezone.now()
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    user=user, key=key, fingerprint=fingerprint, claim_token=token, claimed_at=now
                )
            return Claim(record.pk, token)
        except IntegrityError:
            pass
        existing = IdempotencyKey.objects.filter(user=user, key=key).first()
        if existing is None:
            continue  # purged between our INSERT and this read: try again
        expired = existing.created_at < now - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
        if expired:
            # Past its lifetime but not purged yet: the key is free, as after the purge.
            if _retake(existing, fingerprint=fingerprint, token=token, now=now, renew=True):
                return Claim(existing.pk, token)
            continue
        if existing.fingerprint != fingerprint:
            raise IdempotencyKeyReused(details={"idempotency_key": key})
        if existing.state == IdempotencyKeyState.COMPLETED:
            # A completed key has its response (the table's constraint).
            status = cast(int, existing.response_status)
            return Answer(status, existing.response_body, existing.response_headers)
        abandoned = existing.claimed_at < now - timedelta(
            seconds=settings.IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS
        )
        if not abandoned:
            raise IdempotencyKeyInUse(details={"idempotency_key": key})
        if _retake(existing, fingerprint=fingerprint, token=token, now=now, renew=False):
            return Claim(existing.pk, token)
    raise IdempotencyKeyInUse(details={"idempotency_key": key})


def _retake(
    record: IdempotencyKey, *, fingerprint: str, token: uuid.UUID, now, renew: bool
) -> bool:
    """Take over a record as read, unless someone changed it since (its token or state)."""
    changes: dict[str, Any] = {
        "fingerprint": fingerprint,
        "state": IdempotencyKeyState.IN_FLIGHT,
        "claim_token": token,
        "claimed_at": now,
        "response_status": None,
        "response_body": "",
        "response_headers": {},
        "order": None,
    }
    if renew:
        changes["created_at"] = now
    return bool(
        IdempotencyKey.objects.filter(
            pk=record.pk, claim_token=record.claim_token, state=record.state
        ).update(**changes)
    )


def idempotency_complete(*, claim: Claim, answer: Answer, order: Order | None = None) -> None:
    """Store the answer to replay, in the caller's transaction (the one that did the work).
    Raises IdempotencyClaimLost, so that transaction rolls back, when the claim was retaken
    meanwhile: the retaking request does the work instead."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("complete the claim in the transaction that did the work")
    completed = IdempotencyKey.objects.filter(
        pk=claim.record_id, claim_token=claim.token, state=IdempotencyKeyState.IN_FLIGHT
    ).update(
        state=IdempotencyKeyState.COMPLETED,
        response_status=answer.status,
        response_body=answer.body,
        response_headers=answer.headers,
        order=order,
    )
    if not completed:
        raise IdempotencyClaimLost()


def idempotency_release(*, claim: Claim) -> None:
    """Give the key up after an answer that is not kept (nothing was done). Its own
    transaction; a claim retaken by another request meanwhile is left alone."""
    IdempotencyKey.objects.filter(
        pk=claim.record_id, claim_token=claim.token, state=IdempotencyKeyState.IN_FLIGHT
    ).delete()


def idempotent_run(*, claim: Claim, work: Callable[[], tuple[Answer, Order | None]]) -> Answer:
    """Run `work` (which writes and returns its answer) in one transaction with the claim's
    completion; a non-2xx answer or an exception releases the claim instead."""
    try:
        with transaction.atomic():
            answer, order = work()
            if 200 <= answer.status < 300:
                idempotency_complete(claim=claim, answer=answer, order=order)
    except IdempotencyClaimLost:
        raise
    except BaseException:
        idempotency_release(claim=claim)
        raise
    if not 200 <= answer.status < 300:
        idempotency_release(claim=claim)
    return answer


def idempotency_key_purge(*, now=None) -> int:
    """Delete the keys older than IDEMPOTENCY_KEY_TTL_HOURS; returns how many. One DELETE
    (nothing references these rows). Safe to run twice or concurrently."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
