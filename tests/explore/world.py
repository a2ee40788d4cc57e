"""One seed's run: a shop, its customers, workers, the reconciler, an operator, the warehouse
sync and the webhook worker, taking turns (tests/explore/scheduler.py) against the real
engine, the real PostgreSQL and the simulators over HTTP, under the seed's faults; then the
faults are lifted and the system is left to settle (the drain); then the checks
(tests/explore/checks.py)."""

import random
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from unittest import mock

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core.errors import DomainError
from core.publisher import publisher
from inventory.sync import warehouse_sync
from inventory.tests.factories import product_in_warehouse
from orders.interventions import order_cancel, order_repush_fulfilment, order_retry
from orders.models import Order
from orders.reconciler import reconcile
from orders.tasks import process_ready
from payments.gateway import get_gateway
from tests.explore.plan import (
    PAYMENT_FAULTS,
    RECEIVER_FAULTS,
    WAREHOUSE_FAULTS,
    Fault,
    Plan,
)
from tests.explore.scheduler import Actor, Killed, Scheduler
from webhooks.delivery import deliver_batch
from webhooks.models import EventType, Subscription
from webhooks.outbox import forget_wanted_types

# Short budgets and delays, so that a seed's retries, expiries and re-pushes all happen within
# seconds; the proportions between them are production's.
SETTINGS = {
    "ORDER_BATCH_SIZE": 6,
    "ORDER_CLAIM_SECONDS": 3,
    "ORDER_BATCH_TIME_BUDGET_SECONDS": 0,  # a worker's step is one batch
    "ORDER_STOCK_RETRY_MAX": 3,
    "ORDER_STOCK_RETRY_BASE_SECONDS": 0.05,
    "ORDER_STOCK_RETRY_MAX_DELAY": 0.4,
    "ORDER_PAYMENT_RETRY_MAX": 4,
    "ORDER_PAYMENT_RETRY_BASE_SECONDS": 0.05,
    "ORDER_PAYMENT_RETRY_MAX_DELAY": 0.4,
    "ORDER_SHIP_RETRY_MAX": 4,
    "ORDER_SHIP_RETRY_BASE_SECONDS": 0.05,
    "ORDER_SHIP_RETRY_MAX_DELAY": 0.4,
    "ORDER_ERROR_RETRY_MAX": 3,
    "ORDER_ERROR_RETRY_BASE_SECONDS": 0.05,
    "ORDER_ERROR_RETRY_MAX_DELAY": 0.4,
    "ORDER_STUCK_AFTER_SECONDS": 2,
    "ORDER_RESERVATION_TTL_SECONDS": 6,
    "PAYMENT_CONNECT_TIMEOUT": 0.3,
    "PAYMENT_READ_TIMEOUT": 0.3,
    "PAYMENT_BATCH_CONCURRENCY": 4,
    "WAREHOUSE_CONNECT_TIMEOUT": 0.3,
    "WAREHOUSE_READ_TIMEOUT": 0.3,
    "WEBHOOK_RETRY_BASE_SECONDS": 0.05,
    "WEBHOOK_CONNECT_TIMEOUT": 0.3,
    "WEBHOOK_READ_TIMEOUT": 0.3,
    "WEBHOOK_CLAIM_SECONDS": 3,
    "WEBHOOK_TYPES_CACHE_SECONDS": 0,
    "CELERY_PUBLISH_TIMEOUT": 0.3,
    "ORDER_WAKE_DEBOUNCE_SECONDS": 1,
}
# A request while Redis hangs may take the publish bound, and some room for the machine.
REQUEST_BOUND_SECONDS = 1.0
DRAIN_SECONDS = 40
# A batch's calls all have timeouts (0.3 s here, each call a deadline in all): however its
# providers misbehave, a batch ends within seconds.
BATCH_BOUND_SECONDS = 10.0
# Checkpoints where the scheduler may stop an actor (those it reaches outside a transaction).
CHECKPOINTS = [
    "orders.claiming",
    "orders.claimed",
    "order.out_of_stock.decided",
    "payment.charge.start",
    "order.ship.sending",
    "order.ship.answered",
    "reconciler.order",
    "sync.page",
    "webhooks.sending",
    "webhooks.answered",
]
SWITCH_CHANCE = 0.3
KILL_CHANCE = 0.05
EXPIRE_CHANCE = 0.2
DROP_CHANCE = 0.2


@dataclass
class Run:
    """What a run saw happen, for the checks."""

    plan: Plan
    order_ids: list[int] = field(default_factory=list)
    answers: list[tuple[int, float, bool]] = field(default_factory=list)  # status, s, hung
    task_errors: list[str] = field(default_factory=list)
    stalls: list[str] = field(default_factory=list)
    pushed_back: list[str] = field(default_factory=list)
    slow_batches: list[str] = field(default_factory=list)
    killed: int = 0
    drained: bool = False
    seconds: float = 0.0


class World:
    def __init__(self, plan: Plan, *, sims, redis, staff, customer, settings_fixture):
        self.plan, self.sims, self.redis = plan, sims, redis
        self.staff, self.customer = staff, customer
        self.settings = settings_fixture
        self.rng = random.Random(f"run:{plan.seed}")
        self.run = Run(plan)
        self.scheduler = Scheduler(self._decide)
        self.step = 0
        self.draining = False
        self._no_progress: dict[int, tuple[object, int]] = {}
        self._paused_until = 0.0

    # --- setting up --------------------------------------------------------------------------

    def configure(self, stack: ExitStack) -> None:
        for name, value in SETTINGS.items():
            setattr(self.settings, name, value)
        self.settings.CELERY_BROKER_URL = self.redis.url
        cache = dict(settings.CACHES["default"])
        if "OPTIONS" in cache:  # the production structure, with the explorer's bound
            timeout = SETTINGS["CELERY_PUBLISH_TIMEOUT"]
            cache["OPTIONS"] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        self.settings.CACHES = {"default": {**cache, "LOCATION": self.redis.url}}
        caches["default"].close()
        publisher.cache_clear()
        stack.callback(publisher.cache_clear)
        get_gateway.cache_clear()
        stack.callback(get_gateway.cache_clear)
        from inventory.warehouse import get_warehouse

        get_warehouse.cache_clear()
        stack.callback(get_warehouse.cache_clear)
        # Each actor's clock: a worker's may be off (plan.clock_offsets).
        real_now = timezone.now

        def now():
            actor = self.scheduler.actor_here()
            offset = actor.state.get("clock_offset", 0.0) if actor else 0.0
            return real_now() + timedelta(seconds=offset) if offset else real_now()

        stack.enter_context(mock.patch("django.utils.timezone.now", now))
        previous = threading.excepthook
        threading.excepthook = lambda args: (
            None if issubclass(args.exc_type, Killed) else previous(args)
        )
        stack.callback(setattr, threading, "excepthook", previous)

    def shop(self) -> None:
        self.products = [product_in_warehouse(self.sims.warehouse, n) for n in self.plan.products]
        self.sims.warehouse.configure(seed=self.plan.seed)
        self.sims.payments.configure(seed=self.plan.seed, timeout_delay_ms=600)
        self.sims.receiver.configure(seed=self.plan.seed, slow_ms=100, timeout_delay_ms=600)
        if self.plan.webhooks:
            Subscription.objects.create(
                url=self.sims.receiver.hook_url(), event_types=list(EventType.values)
            )
            forget_wanted_types()
        token = Token.objects.get_or_create(user=self.customer)[0].key
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    def actors(self) -> None:
        add = self.scheduler.add
        self.workers = [self._worker(n) for n in range(self.plan.workers)]
        self.customer_actor = add(Actor("customer", self._customer_step))
        self.reconciler = add(Actor("reconciler", lambda a: reconcile()))
        self.operator = add(Actor("operator", self._operator_step))
        self.sync = add(Actor("sync", lambda a: warehouse_sync(trigger="explorer")))
        self.webhooks = add(Actor("webhooks", lambda a: deliver_batch()))
        self.scheduler.listen(CHECKPOINTS)

    def _worker(self, n: int) -> Actor:
        actor = self.scheduler.add(Actor(f"worker-{n}", self._worker_step))
        actor.state["clock_offset"] = self.plan.clock_offsets.get(n, 0.0)
        return actor

    # --- the actors' steps -------------------------------------------------------------------

    def _worker_step(self, actor: Actor) -> None:
        actor.state.update(claimed=[], started=time.monotonic())
        with _watch_claims(actor):
            try:
                process_ready()
            except SoftTimeLimitExceeded:
                pass  # the task failed by its time limit; Celery goes on with the next
            except (OperationalError, InterfaceError):
                connection.close()  # the task's retry (DATABASE_ERRORS) on a new connection
            except Killed:
                raise
            except Exception as exc:  # the task failed: its batch stalled on one order's fault
                self.run.task_errors.append(f"{actor.name}: {type(exc).__name__}: {exc}"[:300])
        took = time.monotonic() - actor.state["started"]
        if took > BATCH_BOUND_SECONDS:
            self.run.slow_batches.append(f"{actor.name}: a batch took {took:.1f}s")
        self._after_batch(actor.state["claimed"])

    def _customer_step(self, actor: Actor) -> None:
        if len(self.run.order_ids) >= self.plan.orders:
            return
        burst = 4 if self._fault("worker", "backlog") else 1
        for _ in range(min(burst, self.plan.orders - len(self.run.order_ids))):
            product = self.rng.choice(self.products)
            hung = time.monotonic() < self._paused_until
            started = time.monotonic()
            response = self.client.post(
                "/api/orders/",
                {"items": [{"product_id": product.id, "quantity": self.rng.randint(1, 2)}]},
                format="json",
            )
            self.run.answers.append((response.status_code, time.monotonic() - started, hung))
            if response.status_code == 202:
                self.run.order_ids.append(response.json()["id"])

    def _operator_step(self, actor: Actor) -> None:
        orders = Order.objects.filter(pk__in=self.run.order_ids).order_by("pk")
        if self.draining:  # the warehouse fixed: what it refused is pushed again
            for order in orders.filter(status="confirmed", ready_at__isnull=True):
                with suppress(DomainError):
                    order_repush_fulfilment(order=order, actor=self.staff)
            return
        action = self.rng.choice(["cancel", "retry", "repush", "none", "none"])
        status = {"cancel": ["pending", "reserved", "confirmed"], "retry": ["failed"]}.get(
            action, ["confirmed"]
        )
        candidates = list(orders.filter(status__in=status))
        if action == "none" or not candidates:
            return
        order = self.rng.choice(candidates)
        with suppress(DomainError):
            if action == "cancel":
                order_cancel(order=order, actor=self.staff, via="admin")
            elif action == "retry":
                order_retry(order=order, actor=self.staff)
            else:
                order_repush_fulfilment(order=order, actor=self.staff)

    # --- the scheduler's choices at checkpoints ------------------------------------------------

    def _decide(self, actor: Actor, name: str, context: dict):
        if actor.name.startswith("worker"):
            fault = self._worker_fault(actor, name)
            if fault is not None:
                return fault
        return "switch" if self.rng.random() < SWITCH_CHANCE else "go"

    def _worker_fault(self, actor: Actor, name: str):
        if self.draining:
            return None
        limit = self.plan.time_limit if self._fault("worker", "time_limit") else 0
        if limit and time.monotonic() - actor.state["started"] > limit:
            return _raise(SoftTimeLimitExceeded())
        claimed = actor.state.get("claimed")
        if self._fault("worker", "kill") and self.rng.random() < KILL_CHANCE:
            self.scheduler.kill(actor)
            _stop_leases(claimed)
            self.run.killed += 1
            self.workers[self.workers.index(actor)] = self._worker(len(self.scheduler.actors))
            return "switch"
        if claimed and self._fault("worker", "claim_expiry") and self.rng.random() < EXPIRE_CHANCE:
            _stop_leases(claimed)
            Order.objects.filter(pk__in=claimed).update(
                claimed_until=timezone.now() - timedelta(seconds=1)
            )
            return "switch"
        if self._fault("worker", "db_drop") and self.rng.random() < DROP_CHANCE:
            return _drop_connection
        return None

    # --- the run ---------------------------------------------------------------------------------

    def _fault(self, system: str, name: str) -> bool:
        return any(f.system == system and f.name == name for f in self.plan.active(self.step))

    def _apply(self, fault: Fault, on: bool) -> None:
        if fault.system == "payments":
            config = PAYMENT_FAULTS[fault.name]
            self.sims.payments.configure(**(config if on else _off(config)))
        elif fault.system == "warehouse":
            config = dict(WAREHOUSE_FAULTS[fault.name])
            forced = config.pop("fail_next", None)
            if forced and on:
                kind, status, times = forced
                self.sims.warehouse.fail_next(kind, status, times=times)
            if config:
                self.sims.warehouse.configure(**(config if on else _off(config)))
        elif fault.system == "receiver" and on:
            self.sims.receiver.script(*RECEIVER_FAULTS[fault.name])
        elif fault.name == "redis_pause" and on:
            self.redis.pause(3, mode="ALL")
            self._paused_until = time.monotonic() + 3
        elif fault.name == "backlog":
            self.settings.ORDER_BATCH_SIZE = 2 if on else SETTINGS["ORDER_BATCH_SIZE"]

    def play(self) -> Run:
        started = time.monotonic()
        for step in range(self.plan.steps):
            self.step = step
            for fault in self.plan.faults:
                if fault.start == self.step:
                    self._apply(fault, True)
                if fault.end == self.step:
                    self._apply(fault, False)
            self._turn(self._pick())
        for fault in self.plan.faults:
            if fault.end >= self.plan.steps:
                self._apply(fault, False)
        self.run.drained = self._drain()
        for actor in self.scheduler.actors:  # the steps stopped at a checkpoint finish
            while actor.at is not None and not actor.killed:
                self._turn(actor)
        self.scheduler.close()
        self.run.seconds = time.monotonic() - started
        return self.run

    def _pick(self) -> Actor:
        choices = [
            *((w, 6) for w in self.workers),
            (self.customer_actor, 3),
            (self.reconciler, 1),
            (self.operator, 1),
            (self.sync, 1),
        ]
        if self.plan.webhooks:
            choices.append((self.webhooks, 1))
        actors, weights = zip(*choices, strict=True)
        return self.rng.choices(actors, weights)[0]

    def _turn(self, actor: Actor) -> None:
        if actor.killed:
            return
        watched = self._snapshot() if actor in (self.reconciler, self.operator) else None
        self.scheduler.run(actor)
        if watched is not None and actor.at is None:
            self._pushed_back(actor, watched)

    def _drain(self) -> bool:
        """The faults lifted: the system left to settle, as it would by itself (the workers,
        beat's reconciler and sync, the webhook worker; the operator re-pushing what the
        warehouse refused), until every order has ended and nothing is owed to anyone."""
        self.draining = True
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            for actor in (*self.workers, self.reconciler, self.operator, self.webhooks):
                self._turn(actor)
            if self._settled():
                return True
            time.sleep(0.05)
        return False

    def _settled(self) -> bool:
        from tests.explore.checks import settled

        return settled(self)

    # --- watching progress -------------------------------------------------------------------

    def _after_batch(self, claimed: list[int]) -> None:
        """An order a worker claimed again and again without moving on (no progress, no retry
        scheduled) stalls: one bad order holding the head of the queue."""
        rows = Order.objects.filter(pk__in=claimed).values_list("pk", "status", "progressed_at")
        for pk, status, progressed in rows:
            seen, count = self._no_progress.get(pk, (None, 0))
            count = count + 1 if seen == (status, progressed) else 0
            self._no_progress[pk] = ((status, progressed), count)
            if count == 4:
                self.run.stalls.append(
                    f"order {pk} ({status}) claimed 5 times in a row without progress"
                )

    def _snapshot(self) -> dict[int, tuple]:
        now = timezone.now()
        return {
            pk: (ready, progressed)
            for pk, ready, progressed in Order.objects.filter(
                pk__in=self.run.order_ids, ready_at__lte=now
            ).values_list("pk", "ready_at", "progressed_at")
        }

    def _pushed_back(self, actor: Actor, before: dict[int, tuple]) -> None:
        """A re-push keeps an order's place in the queue: one that was due must not come
        later without progress."""
        after = Order.objects.filter(pk__in=list(before)).values_list(
            "pk", "ready_at", "progressed_at"
        )
        for pk, ready, progressed in after:
            was_ready, was_progressed = before[pk]
            if ready and ready > was_ready and progressed == was_progressed:
                self.run.pushed_back.append(
                    f"order {pk} pushed back in the queue by the {actor.name} "
                    f"({was_ready:%H:%M:%S.%f} -> {ready:%H:%M:%S.%f})"
                )


def _off(config: dict) -> dict:
    """The controls of a fault, lifted."""
    off = {}
    for name in config:
        if name.endswith("_rate"):
            off[name] = 0.0
        elif name in ("outage", "hold_charges"):
            off[name] = False
        elif name in ("latency_ms", "max_batch"):
            off[name] = 0
        elif name == "in_use_status":
            off[name] = 409
    return off


def _raise(exc: BaseException) -> Callable[[], None]:
    def fault() -> None:
        raise exc

    return fault


def _drop_connection() -> None:
    """The worker's connection to the database is cut (a restart, a proxy, a network)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")


def _stop_leases(order_ids: list[int] | None) -> None:
    """The claim renewals of these orders stop (their holder is dead, or too slow)."""
    for thread in threading.enumerate():
        ids = getattr(thread, "ids", None)
        if ids and set(ids) & set(order_ids or ()) and hasattr(thread, "stopping"):
            thread.stopping.set()


class _watch_claims:
    """Keeps, in the actor, the ids of the orders its batch claimed."""

    def __init__(self, actor: Actor):
        from core.checkpoints import listening

        self.actor = actor
        self._listening = listening("orders.claimed", self._claimed)

    def _claimed(self, context: dict) -> None:
        if threading.current_thread() is self.actor.thread:
            self.actor.state["claimed"] = list(context.get("order_ids", []))

    def __enter__(self):
        self._listening.__enter__()

    def __exit__(self, *exc) -> None:
        self._listening.__exit__(*exc)


def staff_and_customer():
    users = get_user_model().objects
    staff = users.create_user("explorer-operator", is_staff=True)
    customer = users.create_user("explorer-customer")
    return staff, customer
