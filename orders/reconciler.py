"""The reconciler, run by celery-beat: it finds work the normal path dropped and finishes it.

- an order with no progress for ORDER_STUCK_AFTER_SECONDS (a lost publish, a dead worker, a
  provider that kept not answering): made ready again, keeping its place in the queue (a
  worker that still holds it keeps it), and a worker woken;
- a payment in doubt: settled by looking the charge up by its key, and the order judged by
  the engine on the answer (captured -> confirm, declined -> fail; never by charging
  again);
- a reservation held past ORDER_RESERVATION_TTL_SECONDS: released (failed/
  reservation_expired), whether or not the provider answers; the payment is then abandoned,
  and a capture found on it later is refunded;
- a confirmed order whose cancellation did not finish: finished;
- an abandoned payment (its order failed, was cancelled or took a new payment) that may hold
  a capture: looked up until the provider answers, and a capture refunded.

Every action is logged on its order. Runs are single-flight (a database lease), and each
action is safe to repeat, so two beats cannot double anything. Every order and payment is
handled on its own: one that fails is logged, counted and skipped, and the pass goes on.
Both queues are worked least recently looked at first, so a pass cut short by its time limit,
or orders that keep failing, never keep the others waiting.
"""

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import partial

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.db.models import F, Q, QuerySet

from core.checkpoints import checkpoint
from core.clock import db_now
from core.errors import DomainError
from core.leases import lease_acquire, lease_release
from orders import events
from orders.dispatch import wake_order_workers
from orders.interventions import order_cancel_finish, order_cancel_request
from orders.models import OPEN_STATUSES, Order, OrderEvent, OrderStatus
from orders.scheduling import orders_push_again, orders_ready_now
from orders.transitions import order_transition
from orders.workflow import orders_apply_payments
from payments.models import Payment, PaymentStatus
from payments.services import (
    PaymentInDoubt,
    PaymentRefused,
    payment_checked,
    payment_lookup,
    payment_settle,
)

logger = logging.getLogger(__name__)

LEASE = "reconciler"
S = OrderStatus
E = OrderEvent
P = PaymentStatus
# The database itself failing is not one order's problem: the pass stops, and the task's
# retry policy takes over.
INFRASTRUCTURE_ERRORS = (OperationalError, InterfaceError)


@dataclass
class ReconcileReport:
    skipped: bool = False
    requeued: int = 0
    repushed: int = 0
    confirmed: int = 0
    failed: int = 0
    expired: int = 0
    cancelled: int = 0
    refunded: int = 0
    still_in_doubt: int = 0
    errors: int = 0
    cut_short: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def reconcile(*, now: datetime | None = None) -> ReconcileReport:
    """One reconciler pass; returns what it did. Skips when another pass holds the lease.
    Stops, keeping what it did, when its time budget (RECONCILE_TIME_BUDGET_SECONDS) or the
    task's soft time limit runs out; the next pass takes up the orders it did not reach."""
    now = now or db_now()
    report = ReconcileReport()
    holder = f"reconciler-{uuid.uuid4().hex[:12]}"
    if not lease_acquire(
        name=LEASE, holder=holder, seconds=max(60, settings.RECONCILE_INTERVAL_SECONDS * 4)
    ):
        report.skipped = True
        return report
    deadline = time.monotonic() + settings.RECONCILE_TIME_BUDGET_SECONDS
    try:
        for order in list(stuck_orders(now=now)):
            if time.monotonic() > deadline:
                report.cut_short = True
                break
            Order.objects.filter(pk=order.pk).update(reconciled_at=now)
            _guarded(report, partial(_reconcile_order, order, now=now, report=report), order)
        for payment in list(abandoned_payments_due(now=now)):
            if time.monotonic() > deadline:
                report.cut_short = True
                break
            payment_checked(payment=payment, now=now)
            _guarded(report, partial(_settle_abandoned, payment, report=report), None)
    except SoftTimeLimitExceeded:
        report.cut_short = True
        logger.warning("reconciler: pass cut short by the time limit: %s", report.as_dict())
    finally:
        lease_release(name=LEASE, holder=holder)
    if any(v for k, v in report.as_dict().items() if k != "skipped"):
        logger.info("reconciler: %s", report.as_dict())
    return report


def _guarded(report: ReconcileReport, action: Callable[[], None], order: Order | None) -> None:
    """Run one order's or one payment's action; an error is logged (on the order too),
    counted, and the pass goes on with the next one."""
    try:
        action()
    except (SoftTimeLimitExceeded, *INFRASTRUCTURE_ERRORS):
        raise
    except Exception as exc:
        report.errors += 1
        logger.exception(
            "reconciler: %s failed: %s",
            f"order {order.pk}" if order else "a payment",
            exc,
            extra={"order_id": order.pk if order else None},
        )
        if order is not None:
            events.reconcile_failed_event(order=order, error=f"{type(exc).__name__}: {exc}")


def stuck_orders(*, now: datetime) -> QuerySet[Order]:
    """Open orders without progress for ORDER_STUCK_AFTER_SECONDS, that the reconciler has not
    looked at for as long, least recently looked at first, a batch of them (the partial
    index order_open_progress finds them, however many orders there are)."""
    quiet_since = now - timedelta(seconds=settings.ORDER_STUCK_AFTER_SECONDS)
    return (
        Order.objects.filter(status__in=OPEN_STATUSES, progressed_at__lt=quiet_since)
        .filter(Q(reconciled_at__isnull=True) | Q(reconciled_at__lt=quiet_since))
        .select_related("payment", "cancel_requested_by")
        .order_by(F("reconciled_at").asc(nulls_first=True), "progressed_at", "id")[
            : settings.RECONCILE_BATCH_SIZE
        ]
    )


def abandoned_payments_due(*, now: datetime) -> QuerySet[Payment]:
    """Abandoned payments that may hold a capture, due for a look, a batch of them
    (PaymentQuerySet.to_settle; the partial index payment_abandoned_to_settle)."""
    return Payment.objects.to_settle(
        now=now,
        window=timedelta(seconds=settings.ORDER_LATE_CAPTURE_WINDOW_SECONDS),
        recheck_after=timedelta(seconds=settings.ORDER_STUCK_AFTER_SECONDS),
    ).select_related("order")[: settings.RECONCILE_BATCH_SIZE]


def _reconcile_order(order: Order, *, now: datetime, report: ReconcileReport) -> None:
    checkpoint("reconciler.order", order_id=order.pk)
    if order.status == S.PENDING:
        _requeue(order, report, now)
    elif order.status == S.CONFIRMED:
        if order.cancel_requested_at is None and order.payment.status != P.CAPTURED:
            # A refund was asked for (a cancellation left unfinished before cancellations
            # were requested first): it must not ship; that cancellation is finished.
            order_cancel_request(order=order, actor=None, via="reconciler")
        if order.cancel_requested_at is not None:
            _finish_cancellation(order, report)
        else:
            orders_push_again([order.pk])
            if wake_order_workers():
                events.fulfilment_repushed_event(order=order)
                report.repushed += 1
    else:
        _reconcile_reservation(order, now=now, report=report)


def _requeue(order: Order, report: ReconcileReport, now: datetime) -> None:
    orders_ready_now([order.pk])
    if wake_order_workers():
        idle = int((now - order.progressed_at).total_seconds())
        events.requeued_event(order=order, idle_seconds=idle)
        report.requeued += 1


def _finish_cancellation(order: Order, report: ReconcileReport) -> None:
    try:
        order_cancel_finish(order=order)
    except DomainError as exc:  # logged on the order by the cancellation itself
        logger.warning(
            "reconciler: cancellation of order %s not finished: %s",
            order.pk,
            exc.message,
            extra={"order_id": order.pk},
        )
        return
    report.cancelled += 1


def _reconcile_reservation(order: Order, *, now: datetime, report: ReconcileReport) -> None:
    reserved_at = order.reserved_at or order.created_at
    expired = reserved_at < now - timedelta(seconds=settings.ORDER_RESERVATION_TTL_SECONDS)
    payment = order.payment
    unanswered = False
    if payment.outcome_unknown:
        payment_checked(payment=payment, now=now)  # the sweep need not ask again this pass
        try:
            payment_lookup(payment=payment)
        except PaymentInDoubt:
            unanswered = True
            report.still_in_doubt += 1
        else:
            events.payment_looked_up_event(order=order, payment=payment)
    if payment.status in (P.CAPTURED, P.DECLINED):
        applied = orders_apply_payments([order])
        report.confirmed += len(applied.confirmed)
        report.failed += len(applied.failed)
        if applied.confirmed:
            wake_order_workers()  # to ship it
    elif expired:
        # Unanswered or not captured: the stock goes back either way. The payment is
        # abandoned with the order, so a capture that shows up later is refunded.
        outcome = (
            "the payment service does not answer; a capture found later is refunded"
            if unanswered or payment.outcome_unknown
            else "the charge is known not captured"
        )
        if order_transition(
            orders=[order],
            event=E.RESERVATION_EXPIRED,
            source=S.RESERVED,
            message=f"Reservation held since {reserved_at:%Y-%m-%d %H:%M:%S} UTC expired; "
            f"{outcome}.",
            data={"reserved_at": reserved_at.isoformat(), "payment_status": payment.status},
        ):
            report.expired += 1
    elif not unanswered:
        _requeue(order, report, now)


def _settle_abandoned(payment: Payment, *, report: ReconcileReport) -> None:
    try:
        refunded = payment_settle(payment=payment)
    except PaymentInDoubt:
        report.still_in_doubt += 1
        return
    except PaymentRefused as exc:  # asked again on a later pass, after the others
        logger.warning("reconciler: refund of payment %s refused: %s", payment.pk, exc)
        report.errors += 1
        return
    if refunded:
        report.refunded += 1
        events.refunded_event(order=payment.order, payment=payment)
