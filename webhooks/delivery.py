"""Delivering the outbox: events become deliveries (one per subscription wanting them), due
deliveries are claimed a batch at a time, sent at once in parallel, and every attempt is
recorded with what came of it.

A delivery answered 2xx is done. Any other answer, a timeout or a refused connection is
tried again after WEBHOOK_RETRY_BASE_SECONDS, doubling (with jitter), up to
WEBHOOK_MAX_ATTEMPTS attempts (8 over about 4 hours by default); then it is failed, and an
operator may redeliver it. A subscription failing for WEBHOOK_DISABLE_AFTER_SECONDS (a day)
without one delivery getting through is disabled, logged and counted.

A worker claims the deliveries it sends by moving their next attempt past
WEBHOOK_CLAIM_SECONDS: one that dies mid-send leaves them to the next worker after that, so
an event may be delivered twice (receivers drop repeats by its id), never lost. The order of
events is not guaranteed, even for one order: each carries its time and the order's status.
"""

import logging
import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

import urllib3
from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from core.checkpoints import checkpoint
from core.clock import db_now
from core.http import CallInsideTransaction, in_transaction
from webhooks.models import Attempt, Delivery, DeliveryStatus, Event, Subscription
from webhooks.rendering import event_bodies
from webhooks.signing import signed_headers

logger = logging.getLogger(__name__)

EXCERPT = 500  # characters of an answer kept with its attempt
USER_AGENT = "orderproj-webhooks/1"


@dataclass
class Outcome:
    delivery: Delivery
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str = ""
    excerpt: str = ""

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass
class BatchResult:
    dispatched: int = 0  # events turned into deliveries
    sent: int = 0
    delivered: int = 0


def events_dispatch(*, limit: int) -> int:
    """Turn up to `limit` undelivered-to-anyone events into deliveries, one per active
    subscription receiving their type; returns how many events. Concurrent workers take
    different events (SKIP LOCKED)."""
    with transaction.atomic():
        events = list(
            Event.objects.select_for_update(skip_locked=True, no_key=True)
            .filter(dispatched_at__isnull=True)
            .order_by("id")
            .only("id", "type", "created_at")[:limit]
        )
        if not events:
            return 0
        subscriptions = list(Subscription.objects.filter(is_active=True))
        now = db_now()
        Delivery.objects.bulk_create(
            [
                Delivery(event=event, subscription=sub, next_attempt_at=now, created_at=now)
                for event in events
                for sub in subscriptions
                if event.type in sub.event_types
            ],
            ignore_conflicts=True,
        )
        Event.objects.filter(pk__in=[e.pk for e in events]).update(dispatched_at=now)
    return len(events)


def deliveries_claim(*, limit: int, seconds: float) -> list[Delivery]:
    """Up to `limit` due deliveries of active subscriptions, the longest due first, theirs
    for `seconds` (no other worker takes them meanwhile), with their events' bodies."""
    now = db_now()
    until = now + timedelta(seconds=seconds)
    with transaction.atomic():
        due = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",), no_key=True)
            .filter(
                status=DeliveryStatus.PENDING,
                next_attempt_at__lte=now,
                subscription__is_active=True,
            )
            .select_related("event", "subscription")
            .order_by("next_attempt_at", "id")[:limit]
        )
        if not due:
            return []
        Delivery.objects.filter(pk__in=[d.pk for d in due]).update(next_attempt_at=until)
        for delivery in due:  # the claim: what recording the outcome is guarded by
            delivery.next_attempt_at = until
        unrendered = {d.event_id: d.event for d in due if not d.event.body}
        if unrendered:
            bodies = event_bodies(unrendered.values())
            # One statement; the first worker to render an event fixes its body.
            Event.objects.filter(pk__in=list(bodies), body="").update(
                body=Case(*(When(pk=pk, then=Value(body)) for pk, body in bodies.items()))
            )
            fixed = dict(Event.objects.filter(pk__in=list(unrendered)).values_list("id", "body"))
            for delivery in due:
                if delivery.event_id in fixed:
                    delivery.event.body = fixed[delivery.event_id]
    return due


@lru_cache(maxsize=1)
def _pool() -> urllib3.PoolManager:
    """Kept-alive connections to the receivers, per worker process. urllib3 directly, not
    requests: a request through requests costs several times the CPU, which a worker sending
    hundreds a second feels. No proxy from the environment, no retries, no redirects."""
    return urllib3.PoolManager(num_pools=64, maxsize=settings.WEBHOOK_CONCURRENCY, retries=False)


def _send(delivery: Delivery) -> Outcome:
    """One attempt, whatever happens: any failure, to sign as to send, is an outcome, so one
    bad delivery never costs the others of its round their record. The whole request,
    answer included, takes at most the two timeouts; at most EXCERPT*4 bytes of the answer
    are read (a connection left with more unread is closed, not reused)."""
    event, subscription = delivery.event, delivery.subscription
    started, clock = timezone.now(), time.monotonic()
    checkpoint("webhooks.sending", delivery_id=delivery.pk)
    response = None
    try:
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **signed_headers(
                subscription.secret,
                webhook_id=str(event.uid),
                timestamp=int(time.time()),
                body=event.body,
            ),
        }
        connect, read = settings.WEBHOOK_CONNECT_TIMEOUT, settings.WEBHOOK_READ_TIMEOUT
        response = _pool().request(
            "POST",
            subscription.url,
            body=event.body.encode(),
            headers=headers,
            redirect=False,
            preload_content=False,
            timeout=urllib3.Timeout(connect=connect, read=read, total=connect + read),
        )
        head = response.read(EXCERPT * 4, decode_content=False)
    except Exception as exc:  # any failure at all is this attempt's error
        if response is not None:
            response.close()
        return Outcome(delivery, started, _ms_since(clock), error=f"{type(exc).__name__}: {exc}")
    if response.length_remaining:  # more than we read: not worth reading, nor reusing
        response.close()
    else:
        response.release_conn()
    return Outcome(
        delivery,
        started,
        _ms_since(clock),
        status_code=response.status,
        excerpt=head.decode(errors="replace")[:EXCERPT],
    )


def _ms_since(clock: float) -> int:
    return int((time.monotonic() - clock) * 1000)


def retry_delay(attempts: int) -> float:
    """Seconds until the next attempt after `attempts` failed ones: the base, doubling, with
    jitter of a fifth either way."""
    base = settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempts - 1)
    return base * random.uniform(0.8, 1.2)


def deliveries_send(deliveries: list[Delivery]) -> list[Outcome]:
    """Send each (in parallel, WEBHOOK_CONCURRENCY at a time); never inside a transaction."""
    if not deliveries:
        return []
    if in_transaction():  # here, in the caller's thread: the pool's threads have their own
        raise CallInsideTransaction("webhooks are sent after the transaction commits")
    workers = min(settings.WEBHOOK_CONCURRENCY, len(deliveries))
    if workers == 1:
        return [_send(d) for d in deliveries]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_send, deliveries))


def outcomes_record(outcomes: list[Outcome]) -> BatchResult:
    """Every attempt, each delivery's new state, and its subscription's: in one transaction.
    A subscription failing for WEBHOOK_DISABLE_AFTER_SECONDS is disabled.

    Only the deliveries this worker still holds are recorded: still pending, with its claim's
    time. Another worker may have taken one whose claim ran out, an operator may have asked
    for it again, and a deleted subscription takes its deliveries with it; their outcomes here
    are dropped. Rows are locked deliveries first, then subscriptions, each in id order."""
    result = BatchResult(sent=len(outcomes))
    now = db_now()
    with transaction.atomic():
        claims: dict = defaultdict(list)
        for outcome in outcomes:
            claims[outcome.delivery.next_attempt_at].append(outcome.delivery.pk)
        held = Q()
        for until, ids in claims.items():  # one claim per round: one term
            held |= Q(pk__in=ids, next_attempt_at=until)
        still_held = set(
            Delivery.objects.select_for_update(of=("self",), no_key=True)
            .filter(held, status=DeliveryStatus.PENDING)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        outcomes = [o for o in outcomes if o.delivery.pk in still_held]
        if not outcomes:
            return result
        Attempt.objects.bulk_create(
            [
                Attempt(
                    delivery=o.delivery,
                    number=o.delivery.attempts + 1,
                    started_at=o.started_at,
                    duration_ms=o.duration_ms,
                    status_code=o.status_code,
                    error=o.error,
                    response_excerpt=o.excerpt,
                )
                for o in outcomes
            ]
        )
        # The delivered ones in one statement per status code (most often one); each failed
        # one on its own (its next attempt has its own jitter).
        delivered: dict[int | None, list[int]] = defaultdict(list)
        for outcome in outcomes:
            if outcome.delivered:
                delivered[outcome.status_code].append(outcome.delivery.pk)
            else:
                _record_failure(outcome, now)
        for status_code, ids in delivered.items():
            Delivery.objects.filter(pk__in=ids).update(
                status=DeliveryStatus.DELIVERED,
                delivered_at=now,
                attempts=F("attempts") + 1,
                last_status_code=status_code,
                last_error="",
            )
            result.delivered += len(ids)
        succeeded = {o.delivery.subscription_id for o in outcomes if o.delivered}
        failing = {o.delivery.subscription_id for o in outcomes if not o.delivered} - succeeded
        list(
            Subscription.objects.select_for_update(no_key=True)
            .filter(pk__in=succeeded | failing)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        Subscription.objects.filter(pk__in=succeeded, failing_since__isnull=False).update(
            failing_since=None
        )
        Subscription.objects.filter(pk__in=failing, failing_since__isnull=True).update(
            failing_since=now
        )
        _disable_failing(now)
    return result


def _record_failure(outcome: Outcome, now: datetime) -> None:
    """A failed attempt: retried later, or given up after WEBHOOK_MAX_ATTEMPTS."""
    attempts = outcome.delivery.attempts + 1
    fields: dict[str, Any] = {
        "attempts": attempts,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error or outcome.excerpt,
    }
    if attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        fields["status"] = DeliveryStatus.FAILED
    else:
        fields["next_attempt_at"] = now + timedelta(seconds=retry_delay(attempts))
    Delivery.objects.filter(pk=outcome.delivery.pk).update(**fields)


def _disable_failing(now: datetime) -> None:
    limit = now - timedelta(seconds=settings.WEBHOOK_DISABLE_AFTER_SECONDS)
    failing = list(
        Subscription.objects.select_for_update(no_key=True)
        .filter(is_active=True, failing_since__lte=limit)
        .order_by("pk")
        .values_list("pk", "url", "failing_since")
    )
    for pk, url, since in failing:
        # (Filtered on failing_since, so never null.)
        reason = f"Every attempt failed since {cast(datetime, since).isoformat()}."
        Subscription.objects.filter(pk=pk).update(
            is_active=False, disabled_at=now, disabled_reason=reason
        )
        logger.warning(
            "webhook subscription %s (%s) disabled: %s",
            pk,
            url,
            reason,
            extra={"subscription_id": pk},
        )


def claim_limit() -> int:
    """How many deliveries one round may claim: WEBHOOK_BATCH_SIZE, but no more than can be
    sent within the claim even if every receiver takes its whole timeout. Otherwise, with
    receivers that all time out, the claims would run out before their outcomes are
    recorded, and another worker's round would send them again, with no attempt ever
    counted and no end to the retries."""
    per_request = settings.WEBHOOK_CONNECT_TIMEOUT + settings.WEBHOOK_READ_TIMEOUT
    waves = max(int(settings.WEBHOOK_CLAIM_SECONDS * 0.8 // per_request), 1)
    return max(min(settings.WEBHOOK_BATCH_SIZE, waves * settings.WEBHOOK_CONCURRENCY), 1)


def deliver_batch() -> BatchResult:
    """One round: dispatch new events, claim due deliveries, send them, record the outcomes."""
    dispatched = events_dispatch(limit=settings.WEBHOOK_BATCH_SIZE)
    claimed = deliveries_claim(limit=claim_limit(), seconds=settings.WEBHOOK_CLAIM_SECONDS)
    result = outcomes_record(deliveries_send(claimed)) if claimed else BatchResult()
    result.dispatched = dispatched
    return result


def next_due_in() -> float | None:
    """Seconds until the soonest pending delivery of an active subscription is due (0 if one
    is due now), or None when none is pending."""
    soonest = (
        Delivery.objects.filter(status=DeliveryStatus.PENDING, subscription__is_active=True)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if soonest is None:
        return None
    return max((soonest - db_now()).total_seconds(), 0.0)


def deliveries_redeliver(*, delivery_ids: list[int]) -> int:
    """An operator asks for these deliveries again, now, whatever their state: a pending one
    is tried at once, a delivered or failed one once more (its attempts so far are kept, so a
    failed one that fails again is failed again). Returns how many; the caller wakes a
    worker after commit."""
    with transaction.atomic():
        ids = list(  # locked in id order, as a worker recording outcomes locks them
            Delivery.objects.select_for_update(of=("self",), no_key=True)
            .filter(pk__in=delivery_ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        return Delivery.objects.filter(pk__in=ids).update(
            status=DeliveryStatus.PENDING, next_attempt_at=db_now()
        )


# A subscription turned (back) on, wherever that is done (the admin's action or form, the
# API): its failing clock starts again, or the next round would disable it at once.
ENABLED_AGAIN = {
    "is_active": True,
    "failing_since": None,
    "disabled_at": None,
    "disabled_reason": "",
}


def subscriptions_enable(*, subscription_ids: list[int]) -> int:
    """Turn subscriptions (back) on."""
    return Subscription.objects.filter(pk__in=subscription_ids).update(**ENABLED_AGAIN)
