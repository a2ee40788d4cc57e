"""The reconciler, run by celery-beat: it finds work the normal path dropped and finishes it.

- an order with no progress for ORDER_STUCK_AFTER_SECONDS (a lost publish, a dead worker):
  its processing or fulfilment is published again;
- a payment in doubt: settled by looking the charge up by its key (captured -> confirm,
  declined -> fail; never by charging again);
- a reservation held past ORDER_RESERVATION_TTL_SECONDS: released (failed/
  reservation_expired), only when the charge is known not captured;
- a capture on a failed or cancelled order, found now or arriving later: refunded.

Every action is logged on its order. Runs are single-flight (a database lease), and each
action is safe to repeat, so two beats cannot double anything.
"""

import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max, Q
from django.utils import timezone

from core.checkpoints import checkpoint
from core.leases import lease_acquire, lease_release
from orders.dispatch import enqueue_order_fulfilment, enqueue_order_processing
from orders.models import FailureReason, Order, OrderStatus
from orders.services import order_confirm, order_fail, order_log
from payments.gateway import PaymentGatewayRejected
from payments.models import Payment, PaymentStatus
from payments.services import PaymentInDoubt, payment_lookup, payment_refund_if_captured

logger = logging.getLogger(__name__)

LEASE = "reconciler"
S = OrderStatus
# A charge was attempted but its outcome is not known to be "no capture" for good.
UNSURE = [PaymentStatus.IN_DOUBT, PaymentStatus.NOT_CHARGED, PaymentStatus.PENDING]
# Captured, or maybe still captured: a refund went unanswered.
HELD = [PaymentStatus.CAPTURED, PaymentStatus.REFUND_IN_DOUBT]
NOT_CAPTURED = [status for status in PaymentStatus if status != PaymentStatus.CAPTURED]


@dataclass
class ReconcileReport:
    skipped: bool = False
    requeued: int = 0
    repushed: int = 0
    confirmed: int = 0
    failed: int = 0
    expired: int = 0
    refunded: int = 0
    still_in_doubt: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def reconcile(*, now: datetime | None = None) -> ReconcileReport:
    """One reconciler pass; returns what it did. Skips when another pass holds the lease."""
    now = now or timezone.now()
    report = ReconcileReport()
    holder = f"reconciler-{uuid.uuid4().hex[:12]}"
    if not lease_acquire(
        name=LEASE, holder=holder, seconds=max(60, settings.RECONCILE_INTERVAL_SECONDS * 4)
    ):
        report.skipped = True
        return report
    try:
        for order in _stuck_orders(now):
            checkpoint("reconciler.order", order_id=order.pk)
            _reconcile_order(order, now=now, report=report)
        _refund_late_captures(now=now, report=report)
        _refund_orphaned_captures(now=now, report=report)
    finally:
        lease_release(name=LEASE, holder=holder)
    if any(v for k, v in report.as_dict().items() if k != "skipped"):
        logger.info("reconciler: %s", report.as_dict())
    return report


def _stuck_orders(now: datetime):
    quiet_since = now - timedelta(seconds=settings.ORDER_STUCK_AFTER_SECONDS)
    return (
        Order.objects.filter(status__in=[S.PENDING, S.RESERVED, S.CONFIRMED])
        .annotate(last_activity=Max("logs__created_at"))
        .filter(last_activity__lt=quiet_since)
        .select_related("payment")
        .order_by("id")[: settings.RECONCILE_BATCH_SIZE]
    )


def _stock_attempts(order: Order) -> int:
    """Stock retries since the order was last (re)opened: an operator's retry starts a new
    budget."""
    reopened = order.logs.filter(event="retried").aggregate(last=Max("id"))["last"] or 0
    return order.logs.filter(event="stock_retry", id__gt=reopened).count()


def _requeue(order: Order, report: ReconcileReport, now: datetime) -> None:
    attempts = _stock_attempts(order)
    if enqueue_order_processing(order.pk, attempts_before=attempts):
        idle = int((now - order.last_activity).total_seconds())
        order_log(
            order=order,
            event="requeued",
            from_status=order.status,
            to_status=order.status,
            message=f"No progress for {idle}s; processing published again.",
            data={"idle_seconds": idle, "attempts_before": attempts},
        )
        report.requeued += 1


def _reconcile_order(order: Order, *, now: datetime, report: ReconcileReport) -> None:
    if order.status == S.PENDING:
        _requeue(order, report, now)
    elif order.status == S.CONFIRMED:
        if enqueue_order_fulfilment(order.pk):
            order_log(
                order=order,
                event="fulfilment_repushed",
                from_status=order.status,
                to_status=order.status,
                message="The warehouse has not acknowledged it; pushed again.",
            )
            report.repushed += 1
    else:
        _reconcile_reservation(order, now=now, report=report)


def _reconcile_reservation(order: Order, *, now: datetime, report: ReconcileReport) -> None:
    reserved_at = (
        order.logs.filter(to_status=S.RESERVED)
        .order_by("-id")
        .values_list("created_at", flat=True)
        .first()
        or order.created_at
    )
    expired = reserved_at < now - timedelta(seconds=settings.ORDER_RESERVATION_TTL_SECONDS)
    payment = order.payment
    if payment.attempts and payment.status not in (PaymentStatus.CAPTURED, PaymentStatus.DECLINED):
        try:
            payment = payment_lookup(payment=payment)
        except PaymentInDoubt:
            report.still_in_doubt += 1  # stock stays reserved until the provider answers
            return
        order_log(
            order=order,
            event="payment_looked_up",
            from_status=order.status,
            to_status=order.status,
            message=f"The payment service says: {payment.get_status_display()}.",
            data={
                "payment_status": payment.status,
                "payment_reference": payment.provider_reference,
            },
        )
    if payment.status == PaymentStatus.CAPTURED:
        if order_confirm(order=order, payment=payment):
            report.confirmed += 1
            enqueue_order_fulfilment(order.pk)
    elif payment.status == PaymentStatus.DECLINED:
        if order_fail(
            order=order,
            reason=FailureReason.PAYMENT_DECLINED,
            message="Payment declined.",
            data={"payment_reference": payment.provider_reference},
        ):
            report.failed += 1
    elif expired:
        # Known not captured: never attempted, or the provider has no charge for the key.
        if order_fail(
            order=order,
            reason=FailureReason.RESERVATION_EXPIRED,
            message=f"Reservation held since {reserved_at:%Y-%m-%d %H:%M:%S} UTC "
            "expired; the charge is known not captured.",
            data={"reserved_at": reserved_at.isoformat(), "payment_status": payment.status},
        ):
            report.expired += 1
    else:
        _requeue(order, report, now)


def _refund_if_captured(payment: Payment, report: ReconcileReport) -> bool:
    """Refund the payment's charge if the provider holds a capture (asked by key unless our
    record says captured); True when it was refunded now."""
    try:
        refunded = payment_refund_if_captured(payment=payment, look_up=NOT_CAPTURED)
    except PaymentInDoubt:
        report.still_in_doubt += 1
        return False
    except PaymentGatewayRejected as exc:  # one refused refund must not end the whole pass
        logger.warning("reconciler: refund of payment %s refused: %s", payment.pk, exc)
        return False
    report.refunded += refunded
    return refunded


def _refund_orphaned_captures(*, now: datetime, report: ReconcileReport) -> None:
    """Payments an operator's retry replaced (no order points at them any more): a capture
    on one, found now or arriving later, is refunded; the order's log says so."""
    window = now - timedelta(seconds=settings.ORDER_LATE_CAPTURE_WINDOW_SECONDS)
    recheck = now - timedelta(seconds=settings.ORDER_STUCK_AFTER_SECONDS)
    orphans = (
        Payment.objects.filter(order__isnull=True, attempts__gt=0)
        .filter(
            Q(status__in=HELD)
            | Q(status__in=UNSURE, updated_at__lt=recheck, updated_at__gte=window)
        )
        .order_by("id")[: settings.RECONCILE_BATCH_SIZE]
    )
    for payment in orphans:
        if not _refund_if_captured(payment, report):
            continue
        order = Order.objects.filter(uid=payment.reference.removeprefix("order:")).first()
        if order is not None:
            order_log(
                order=order,
                event="refunded",
                from_status=order.status,
                to_status=order.status,
                message="A capture on a payment replaced by a retry was refunded.",
                data={"payment_id": payment.pk, "payment_reference": payment.provider_reference},
            )


def _refund_late_captures(*, now: datetime, report: ReconcileReport) -> None:
    """Failed or cancelled orders whose charge is, or may yet turn out, captured."""
    window = now - timedelta(seconds=settings.ORDER_LATE_CAPTURE_WINDOW_SECONDS)
    recheck = now - timedelta(seconds=settings.ORDER_STUCK_AFTER_SECONDS)
    candidates = (
        Order.objects.filter(status__in=[S.FAILED, S.CANCELLED], payment__attempts__gt=0)
        .filter(
            Q(payment__status__in=HELD)
            | Q(
                payment__status__in=UNSURE,
                payment__updated_at__lt=recheck,
                updated_at__gte=window,
            )
        )
        .select_related("payment")
        .order_by("id")[: settings.RECONCILE_BATCH_SIZE]
    )
    for order in candidates:
        payment = order.payment
        if not _refund_if_captured(payment, report):
            continue
        order_log(
            order=order,
            event="refunded",
            from_status=order.status,
            to_status=order.status,
            message=f"A capture on this {order.status} order was refunded.",
            data={"payment_reference": payment.provider_reference},
        )
