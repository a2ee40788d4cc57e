"""Delivering the outbox: events become deliveries (one per subscription wanting them), due
deliveries are claimed a batch at a time and sent in parallel, and every attempt is recorded
with what came of it.

A worker keeps its senders busy: what it claimed is sent WEBHOOK_CONCURRENCY at a time, at
most WEBHOOK_SUBSCRIPTION_CONCURRENCY of them to one subscription, so a slow receiver uses its
own share of the senders, not everyone's; outcomes are recorded as they come back and more is
claimed as the senders free up, so no delivery waits for the slowest send of its claim. Every
request is cut at its deadline (WEBHOOK_CONNECT_TIMEOUT + WEBHOOK_READ_TIMEOUT, connecting,
sending and every byte of the answer) by closing its socket: a receiver that drips its answer
is a timeout like one that never answers.

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

import contextlib
import logging
import random
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

import urllib3
import urllib3.connection
from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, F, Q, Value, When
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
    """Turn up to `limit` undelivered-to-anyone events into deliveries, one per subscription
    each is for (fixed when it was written; those of a disabled subscription wait until it
    is enabled, those of a deleted one are not made); returns how many events. Concurrent
    workers take different events (SKIP LOCKED)."""
    with transaction.atomic():
        events = list(
            Event.objects.select_for_update(skip_locked=True, no_key=True)
            .filter(dispatched_at__isnull=True)
            .order_by("id")
            .only("id", "type", "created_at", "subscription_ids")[:limit]
        )
        if not events:
            return 0
        now = db_now()
        Delivery.objects.bulk_create(
            [
                Delivery(event=event, subscription_id=pk, next_attempt_at=now, created_at=now)
                for event, pk in _recipients(events)
            ],
            ignore_conflicts=True,
        )
        Event.objects.filter(pk__in=[e.pk for e in events]).update(dispatched_at=now)
    return len(events)


def _recipients(events: list[Event]) -> list[tuple[Event, int]]:
    """(event, subscription id) for each subscription that still exists of those each event
    is for; an event written by a release before `subscription_ids` is for the active
    subscriptions receiving its type."""
    named = {pk for event in events for pk in event.subscription_ids or ()}
    existing = set(Subscription.objects.filter(pk__in=named).values_list("pk", flat=True))
    recipients = [
        (event, pk)
        for event in events
        if event.subscription_ids is not None
        for pk in event.subscription_ids
        if pk in existing
    ]
    if any(event.subscription_ids is None for event in events):
        active = list(Subscription.objects.filter(is_active=True).only("pk", "event_types"))
        recipients += [
            (event, subscription.pk)
            for event in events
            if event.subscription_ids is None
            for subscription in active
            if event.type in subscription.event_types
        ]
    return recipients


def deliveries_claim(
    *, limit: int, seconds: float, held: Mapping[int, int] | None = None
) -> list[Delivery]:
    """Up to `limit` due deliveries of active subscriptions, the longest due first, theirs
    for `seconds` (no other worker takes them meanwhile), with their events' bodies. No
    subscription gets more than `subscription_claim_limit()`, counting the `held` ones
    (claimed before and not yet recorded, by subscription id): a backlog for a receiver that
    times out would otherwise fill every claim, and the other subscriptions wait behind it.

    One look per active subscription with room (its oldest due, by the index on
    subscription and due time), so a large backlog of one is never read past to find the
    others'; then the oldest of all, up to `limit`."""
    now = db_now()
    until = now + timedelta(seconds=seconds)
    held = held or {}
    subscriptions = Subscription.objects.filter(is_active=True).only("pk", "failing_since")
    with transaction.atomic():
        due: list[Delivery] = []
        for subscription in subscriptions.order_by("pk"):
            room = min(subscription_claim_limit(subscription) - held.get(subscription.pk, 0), limit)
            if room <= 0:
                continue
            due += list(
                Delivery.objects.select_for_update(skip_locked=True, of=("self",), no_key=True)
                .filter(
                    subscription=subscription,
                    status=DeliveryStatus.PENDING,
                    next_attempt_at__lte=now,
                )
                .select_related("event", "subscription")
                .order_by("next_attempt_at", "id")[:room]
            )
        # (Those past the limit stay due: locked only until this transaction ends.)
        due = sorted(due, key=lambda d: (d.next_attempt_at, d.pk))[:limit]
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


class Send:
    """One attempt in flight: its delivery, when it started, its deadline, and the socket it
    went out on, shut when the deadline passes first (`cut`): a read timeout only bounds the
    wait for the next byte, and a receiver dripping its answer would hold the sender for as
    long as it liked. (The socket, not its connection: http.client lets go of a connection's
    socket once an answer that closes it has begun, and reads the body from it still.)"""

    def __init__(self, delivery: Delivery):
        self.delivery = delivery
        self.started_at = timezone.now()
        self.clock = time.monotonic()
        self.seconds = settings.WEBHOOK_CONNECT_TIMEOUT + settings.WEBHOOK_READ_TIMEOUT
        self.deadline = self.clock + self.seconds
        self.was_cut = False
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket | None) -> None:
        """The request goes out on `sock` (None: a socket about to be opened, attached once
        connected)."""
        with self._lock:
            if self.was_cut:
                raise TimeoutError("cut before it was sent")
            self._socket = sock

    def finish(self) -> bool:
        """The request is over: from here on `cut` touches nothing (its connection may go
        back to the pool, to another send). True if it was cut."""
        with self._lock:
            self._socket = None
            return self.was_cut

    def cut(self) -> None:
        """Past its deadline: shut its socket, which ends any wait on it at once (again and
        again is harmless: a socket being opened is shut by the next call)."""
        with self._lock:
            self.was_cut = True
            sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):  # closed already
                sock.shutdown(socket.SHUT_RDWR)

    def timed_out(self) -> Outcome:
        error = f"TimeoutError: no whole answer within {self.seconds:g} s"
        return Outcome(self.delivery, self.started_at, _ms_since(self.clock), error=error)


_sending = threading.local()  # the Send this thread is making


class _Watched:
    """A connection that tells the Send it is made for which socket to shut: the one it has
    (kept alive), or the one it opens."""

    sock: socket.socket | None

    def request(self, *args, **kwargs):
        send = getattr(_sending, "send", None)
        if send is not None:
            send.attach(self.sock)
        return super().request(*args, **kwargs)

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        send = getattr(_sending, "send", None)
        if send is not None:
            send.attach(self.sock)


class _WatchedHTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


@lru_cache(maxsize=1)
def _pool() -> urllib3.PoolManager:
    """Kept-alive connections to the receivers, per worker process. urllib3 directly, not
    requests: a request through requests costs several times the CPU, which a worker sending
    hundreds a second feels. No proxy from the environment, no retries, no redirects."""
    manager = urllib3.PoolManager(num_pools=64, maxsize=settings.WEBHOOK_CONCURRENCY, retries=False)
    manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
    return manager


def _send(send: Send) -> Outcome:
    """One attempt, whatever happens: any failure, to sign as to send, is an outcome, so one
    bad delivery never costs the others their record. At most EXCERPT*4 bytes of the answer
    are read (a connection left with more unread is closed, not reused)."""
    delivery = send.delivery
    event, subscription = delivery.event, delivery.subscription
    _sending.send = send
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
        cut = send.finish()
        if response is not None:
            response.close()
        if cut:
            return send.timed_out()
        error = f"{type(exc).__name__}: {exc}"
        return Outcome(delivery, send.started_at, _ms_since(send.clock), error=error)
    finally:
        _sending.send = None
    if send.finish():  # what was read may be cut short: no answer
        response.close()
        return send.timed_out()
    if response.length_remaining:  # more than we read: not worth reading, nor reusing
        response.close()
    else:
        response.release_conn()
    return Outcome(
        delivery,
        send.started_at,
        _ms_since(send.clock),
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


def subscription_share(failing: bool) -> int:
    """How many requests to one subscription may be in flight at once: its share of the
    senders, WEBHOOK_SUBSCRIPTION_CONCURRENCY; one while it is failing (its last answer was
    not a 2xx), which is enough to find out it is back."""
    return 1 if failing else settings.WEBHOOK_SUBSCRIPTION_CONCURRENCY


def subscription_claim_limit(subscription: Subscription) -> int:
    """How many deliveries of one subscription a worker holds at once: as many as its share
    of the senders can send within the claim if every one times out."""
    return subscription_share(subscription.failing_since is not None) * _waves()


@dataclass
class _Claimed:
    delivery: Delivery
    seconds: float  # the claim's length
    lapses: float  # (time.monotonic()) when it runs out


@dataclass
class Flight:
    """What a worker claimed and has not recorded yet: sent WEBHOOK_CONCURRENCY at a time, at
    most its share (subscription_share) to one subscription, the rest waiting in its queue,
    each cut at its deadline. `take()` hands over what came back. A delivery that waited in
    its queue until its claim would run out before its request's deadline is not sent but
    handed back (`released`): another worker may hold it by then."""

    pool: ThreadPoolExecutor
    queued: dict[int, deque[_Claimed]] = field(default_factory=lambda: defaultdict(deque))
    running: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    held: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    sends: set[Send] = field(default_factory=set)
    done: list[Outcome] = field(default_factory=list)
    released: list[Delivery] = field(default_factory=list)
    failing: dict[int, bool] = field(default_factory=dict)  # its last answer was not a 2xx
    changed: threading.Condition = field(default_factory=threading.Condition)

    def __len__(self) -> int:
        with self.changed:
            return sum(self.held.values())

    def add(self, deliveries: Iterable[Delivery], *, seconds: float) -> None:
        """Deliveries claimed just now, for `seconds`."""
        lapses = time.monotonic() + seconds
        with self.changed:
            for delivery in deliveries:
                claimed = _Claimed(delivery, seconds, lapses)
                failing = delivery.subscription.failing_since is not None
                self.failing.setdefault(delivery.subscription_id, failing)
                self.queued[delivery.subscription_id].append(claimed)
                self.held[delivery.subscription_id] += 1
            self._start()

    def _start(self) -> None:
        """(Holding the lock.) Start what each subscription's share of the senders allows."""
        per_request = settings.WEBHOOK_CONNECT_TIMEOUT + settings.WEBHOOK_READ_TIMEOUT
        for subscription_id, queue in self.queued.items():
            while queue and self.running[subscription_id] < self._share(subscription_id):
                claimed = queue.popleft()
                # (A claim shorter than one request, which docs/settings.md warns against,
                # sends each at once: none could ever be sent otherwise.)
                late = time.monotonic() + per_request >= claimed.lapses
                if late and claimed.seconds > per_request:
                    self.released.append(claimed.delivery)
                    self.changed.notify_all()
                    continue
                self.running[subscription_id] += 1
                future = self.pool.submit(self._run, claimed.delivery)
                future.add_done_callback(self._finished)

    def _share(self, subscription_id: int) -> int:
        return subscription_share(self.failing.get(subscription_id, False))

    def _run(self, delivery: Delivery) -> Outcome:
        send = Send(delivery)
        with self.changed:
            self.sends.add(send)
            self.changed.notify_all()  # a new deadline to watch
        try:
            return _send(send)
        finally:
            with self.changed:
                self.sends.discard(send)

    def _finished(self, future: Future) -> None:
        outcome = future.result()  # (_send turns every failure into an outcome)
        with self.changed:
            self.running[outcome.delivery.subscription_id] -= 1
            self.failing[outcome.delivery.subscription_id] = not outcome.delivered
            self.done.append(outcome)
            self._start()
            self.changed.notify_all()

    def close(self) -> None:
        """The worker stops (its task cut short): the queued ones are left to their claims
        running out, as a dead worker's, and the running ones are cut."""
        with self.changed:
            self.queued.clear()
            for send in self.sends:
                send.cut()

    def hungry(self) -> bool:
        """A sender is idle and nothing claimed could start on it (every queue left is of a
        subscription using its whole share): more should be claimed."""
        with self.changed:
            if sum(self.running.values()) >= settings.WEBHOOK_CONCURRENCY:
                return False
            return not any(
                q and self.running[pk] < self._share(pk) for pk, q in self.queued.items()
            )

    def take(
        self, *, linger: float, poll: float | None = None
    ) -> tuple[list[Outcome], list[Delivery]]:
        """What came back (and what was handed back): waits for the first, cutting the sends
        past their deadline meanwhile, then up to `linger` seconds more while sends are still
        running, so outcomes are recorded a group at a time. With `poll`, returns after that
        long with nothing if a sender is idle meanwhile (`hungry`), for the caller to claim
        more: the slow sends of one subscription do not keep the others waiting."""
        hungry_until = time.monotonic() + poll if poll is not None and self.hungry() else None
        with self.changed:
            first: float | None = None
            while True:
                now = time.monotonic()
                for send in self.sends:
                    if send.deadline <= now:
                        send.cut()
                if (self.done or self.released) and first is None:
                    first = now
                running = sum(self.running.values())
                if first is not None and (now - first >= linger or not running):
                    break
                if not running and not any(self.queued.values()):
                    break
                if first is None and hungry_until is not None and now >= hungry_until:
                    break
                deadlines = [s.deadline for s in self.sends]
                if first is not None:
                    wake = first + linger
                else:
                    wake = min([*deadlines, hungry_until or now + 1.0])
                self.changed.wait(timeout=max(wake - now, 0.001))
            done, released = self.done, self.released
            self.done, self.released = [], []
            for item in [*(o.delivery for o in done), *released]:
                self.held[item.subscription_id] -= 1
            return done, released


def deliveries_send(deliveries: list[Delivery]) -> list[Outcome]:
    """Send each (in parallel, WEBHOOK_CONCURRENCY at a time, WEBHOOK_SUBSCRIPTION_CONCURRENCY
    to one subscription), each cut at its deadline; never inside a transaction."""
    if not deliveries:
        return []
    if in_transaction():  # here, in the caller's thread: the pool's threads have their own
        raise CallInsideTransaction("webhooks are sent after the transaction commits")
    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=settings.WEBHOOK_CONCURRENCY) as pool:
        flight = Flight(pool)
        flight.add(deliveries, seconds=float("inf"))
        while len(flight):
            done, _ = flight.take(linger=0.0)
            outcomes += done
    order = {d.pk: i for i, d in enumerate(deliveries)}
    return sorted(outcomes, key=lambda o: order[o.delivery.pk])


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
    return max(min(settings.WEBHOOK_BATCH_SIZE, _waves() * settings.WEBHOOK_CONCURRENCY), 1)


def _waves() -> int:
    """How many requests one sender can make, one after another, within 80 % of a claim if
    every one takes its whole deadline."""
    per_request = settings.WEBHOOK_CONNECT_TIMEOUT + settings.WEBHOOK_READ_TIMEOUT
    return max(int(settings.WEBHOOK_CLAIM_SECONDS * 0.8 // per_request), 1)


# Outcomes coming back within this long of the first are recorded with it, in one transaction.
RECORD_LINGER_SECONDS = 0.05
# While a sender is idle and only slow sends run, a look for more that is due this often.
HUNGRY_POLL_SECONDS = 0.2


def deliveries_deliver(*, budget: float) -> BatchResult:
    """Deliver what is due until nothing is, or for `budget` seconds (then what is in flight
    is finished and recorded; a budget of 0 is one claim): dispatch new events, claim due
    deliveries (more as the senders free up), send them, and record the outcomes a group at
    a time as they come back."""
    result = BatchResult()
    until = time.monotonic() + budget
    seconds = settings.WEBHOOK_CLAIM_SECONDS
    with ThreadPoolExecutor(max_workers=settings.WEBHOOK_CONCURRENCY) as pool:
        flight = Flight(pool)
        try:
            _deliver(flight, result, until=until, seconds=seconds)
        finally:
            flight.close()
    return result


def _deliver(flight: Flight, result: BatchResult, *, until: float, seconds: float) -> None:
    """deliveries_deliver's loop: claim while there is budget left and a sender has nothing
    to start, hand each group of outcomes to outcomes_record as it comes back."""
    first = True
    while True:
        held = len(flight)
        claim = first or (time.monotonic() < until and held < claim_limit() and flight.hungry())
        if claim:
            first = False
            dispatched = events_dispatch(limit=settings.WEBHOOK_BATCH_SIZE)
            result.dispatched += dispatched
            claimed = deliveries_claim(
                limit=claim_limit() - held, seconds=seconds, held=dict(flight.held)
            )
            if claimed:
                checkpoint("webhooks.sending", delivery_ids=[d.pk for d in claimed])
                flight.add(claimed, seconds=seconds)
            elif not held:
                if dispatched and time.monotonic() < until:
                    continue  # events dispatched just now: the next claim takes theirs
                return
        elif not held:
            return
        done, released = flight.take(linger=RECORD_LINGER_SECONDS, poll=HUNGRY_POLL_SECONDS)
        if done:
            checkpoint("webhooks.answered", delivery_ids=[o.delivery.pk for o in done])
            recorded = outcomes_record(done)
            result.sent += recorded.sent
            result.delivered += recorded.delivered
        if released:
            deliveries_release(released)


def deliver_batch() -> BatchResult:
    """One round: dispatch new events, claim due deliveries, send them, record the outcomes."""
    return deliveries_deliver(budget=0.0)


def deliveries_release(deliveries: list[Delivery]) -> int:
    """Claimed deliveries handed back unsent: due again now, if still this worker's."""
    held = Q()
    for delivery in deliveries:
        held |= Q(pk=delivery.pk, next_attempt_at=delivery.next_attempt_at)
    return Delivery.objects.filter(held, status=DeliveryStatus.PENDING).update(
        next_attempt_at=db_now()
    )


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


def deliveries_waiting(*, subscription_ids: list[int]) -> dict[int, int]:
    """How many deliveries wait to be sent to each of these subscriptions (those with any)."""
    rows = (
        Delivery.objects.filter(subscription_id__in=subscription_ids, status=DeliveryStatus.PENDING)
        .values_list("subscription_id")
        .annotate(count=Count("pk"))
    )
    return dict(rows)


def deliveries_skip(*, subscription_ids: list[int], by: str) -> int:
    """An operator gives up what waits for these subscriptions (a receiver that will never
    want the backlog): each pending delivery is failed, unsent, and says who skipped it.
    Redeliver sends one after all. Returns how many."""
    with transaction.atomic():
        ids = list(  # locked in id order, as a worker recording outcomes locks them
            Delivery.objects.select_for_update(of=("self",), no_key=True)
            .filter(subscription_id__in=subscription_ids, status=DeliveryStatus.PENDING)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        skipped = Delivery.objects.filter(pk__in=ids).update(
            status=DeliveryStatus.FAILED, last_error=f"Skipped by {by}, unsent."
        )
    logger.info(
        "%s webhook deliveries skipped by %s for subscription(s) %s",
        skipped,
        by,
        ", ".join(map(str, sorted(subscription_ids))),
    )
    return skipped


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
