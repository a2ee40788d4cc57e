"""The order saga (docs/DESIGN.md, "Processing workflow") as a plain service: one call
advances a batch of orders as far as each can go (reserve, charge, confirm, push to the
warehouse) and says, for each, whether and when to call again. Orders ready for the same step
move together, in a few statements per step whatever their number: their stock reserved
under one lock of the rows (each order all its lines or none, first come first served),
their charges sent at once, their confirmations, failures and shipments applied as sets. A
lone order is a batch of one. Celery runs it (orders/tasks.py); tests call it directly.

Resumable from any state and safe to run twice, also concurrently: every step is a
transition guarded by the state it was decided for (orders/transitions.py), and the retry
budgets are counted on the order and its payment, not by the caller.
"""

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import prefetch_related_objects

from core.checkpoints import checkpoint
from inventory.fulfilment import (
    Shipment,
    WarehouseRejected,
    WarehouseUnavailable,
    shipment_push,
    shipments_push,
)
from inventory.services import InsufficientStock
from inventory.types import ShippedLevel
from orders import events
from orders.dispatch import enqueue_order_fulfilment
from orders.models import Order, OrderEvent, OrderStatus
from orders.selectors import LINES_WITH_PRODUCTS, order_lines
from orders.services import order_reserve, record_shipped_after_cancel
from orders.transitions import order_transition
from payments.batch import payments_charge
from payments.models import Payment, PaymentStatus
from payments.services import PaymentInDoubt, PaymentRefused, payment_settle

logger = logging.getLogger(__name__)

S = OrderStatus
E = OrderEvent
P = PaymentStatus


@dataclass(frozen=True)
class Step:
    """What the caller should do next for an order: nothing (done), or call again in
    `retry_in` seconds; `shipping`: it is the push to the warehouse that waits."""

    done: bool
    retry_in: float | None = None
    shipping: bool = False


DONE = Step(done=True)


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with proportional jitter: base * 2**attempt, capped, times a
    random factor in [1, 1 + ORDER_RETRY_JITTER)."""
    return min(cap, base * 2**attempt) * (1 + random.random() * settings.ORDER_RETRY_JITTER)


def _load(order_id: int) -> Order:
    return Order.objects.select_related("payment").get(pk=order_id)  # lines: order_lines


def orders_advance(orders: list[Order]) -> dict[int, Step]:
    """Advance every order (loaded with its payment) as far as it can go; returns each one's
    Step. No transaction is held across the payment or the warehouse calls.

    Each round takes every order one step from its status, the orders of one status
    together; an order found moved by another actor is read again, and the next round
    judges it from where it is."""
    steps: dict[int, Step] = {}
    prefetch_related_objects(orders, LINES_WITH_PRODUCTS)  # every order's lines, one query
    for _ in range(6):
        live = [o for o in orders if o.pk not in steps]
        if not live:
            break
        stale: list[Order] = []
        for order in live:
            if order.status in (S.FAILED, S.CANCELLED, S.FULFILLED):
                if order.status != S.FULFILLED:
                    _settle_payments(order)
                steps[order.pk] = DONE
        for status, step in ((S.PENDING, _reserve), (S.RESERVED, _pay), (S.CONFIRMED, _ship)):
            ready = [o for o in live if o.status == status and o.pk not in steps]
            ready = [o for o in ready if o not in stale]
            if ready:
                step(ready, steps, stale)
        for order in stale:
            order.refresh_from_db()
    return {order.pk: steps.get(order.pk, DONE) for order in orders}


Steps = dict[int, Step]


def _reserve(orders: list[Order], steps: Steps, stale: list[Order]) -> None:
    if len(orders) == 1:
        order = orders[0]
        try:
            if not order_reserve(order=order):
                stale.append(order)
            return
        except InsufficientStock as exc:
            short = {order.pk: exc.details["shortages"]}
    else:
        moved = order_transition(
            orders=orders,
            event=E.RESERVED,
            source=S.PENDING,
            message="Stock reserved for every line.",
            data_of={
                o.pk: {
                    "quantities": {str(line.product_id): line.quantity for line in order_lines(o)}
                }
                for o in orders
            },
        )
        short = {
            pk: [
                {"product_id": x.product_id, "requested": x.requested, "available": x.available}
                for x in lacking
            ]
            for pk, lacking in moved.short.items()
        }
        moved_ids = {o.pk for o in moved}
        stale += [o for o in orders if o.pk not in moved_ids and o.pk not in short]
    waiting = [o for o in orders if o.pk in short]
    exhausted = [o for o in waiting if o.stock_attempts >= settings.ORDER_STOCK_RETRY_MAX]
    if exhausted:
        for order in exhausted:
            checkpoint("order.out_of_stock.decided", order_id=order.pk)
        _fail(
            exhausted,
            E.OUT_OF_STOCK,
            S.PENDING,
            steps,
            stale,
            message=lambda o: f"Not enough stock after {o.stock_attempts + 1} attempt(s).",
            data=lambda o: {"attempts": o.stock_attempts + 1, "shortages": short[o.pk]},
        )
    retrying = [o for o in waiting if o not in exhausted]
    if retrying:
        delays = {
            o.pk: _delay(
                o.stock_attempts,
                settings.ORDER_STOCK_RETRY_BASE_SECONDS,
                settings.ORDER_STOCK_RETRY_MAX_DELAY,
            )
            for o in retrying
        }
        counted = events.stock_retry_events(orders=retrying, shortages=short, retry_in=delays)
        _wait(retrying, counted, delays, steps, stale)


def _pay(orders: list[Order], steps: Steps, stale: list[Order]) -> None:
    charged = payments_charge(payments=[o.payment for o in orders])
    refused = [o for o in orders if o.payment.pk in charged.refused]
    _fail(
        refused,
        E.PAYMENT_ERROR,
        S.RESERVED,
        steps,
        stale,
        message=lambda o: "The payment service refused the charge request.",
        data=lambda o: {"attempt": o.payment.attempts, "error": charged.refused[o.payment.pk]},
    )
    rest = [o for o in orders if o not in refused]
    captured = [o for o in rest if o.payment.status == P.CAPTURED]
    if captured:
        moved = order_transition(
            orders=captured,
            event=E.CONFIRMED,
            source=S.RESERVED,
            message="Payment captured.",
            data_of={
                o.pk: {
                    "payment_reference": o.payment.provider_reference,
                    "attempt": o.payment.attempts,
                }
                for o in captured
            },
        )
        for order in captured:
            if order not in moved:
                _captured_but_not_confirmed(order, steps, stale)
    declined = [o for o in rest if o.payment.status == P.DECLINED]
    _fail(
        declined,
        E.PAYMENT_DECLINED,
        S.RESERVED,
        steps,
        stale,
        message=lambda o: f"Payment declined: {o.payment.last_error or 'no reason given'}.",
        data=lambda o: {
            "attempt": o.payment.attempts,
            "payment_reference": o.payment.provider_reference,
            "decline_reason": o.payment.last_error,
        },
    )
    # Settled, or voided, for an order that no longer wants it: judge the order again.
    unwanted = (P.REFUNDED, P.REFUND_IN_DOUBT, P.VOIDED)
    stale += [o for o in rest if o.payment.status in unwanted]
    undecided = [o for o in rest if o.payment.status not in (P.CAPTURED, P.DECLINED, *unwanted)]
    # No definitive answer (in doubt, or "no charge yet" while another worker's request may
    # be on its way): try again later, or, out of tries, leave it to the reconciler, which
    # asks the provider on its passes and releases the reservation when it expires.
    out_of_tries = [o for o in undecided if o.payment.tries >= settings.ORDER_PAYMENT_RETRY_MAX]
    for order in out_of_tries:
        events.payment_in_doubt_event(order=order, payment=order.payment)
        steps[order.pk] = DONE
    retrying = [o for o in undecided if o not in out_of_tries]
    if retrying:
        delays = {
            o.pk: _delay(
                max(o.payment.tries - 1, 0),
                settings.ORDER_PAYMENT_RETRY_BASE_SECONDS,
                settings.ORDER_PAYMENT_RETRY_MAX_DELAY,
            )
            for o in retrying
        }
        counted = events.payment_retry_events(orders=retrying, retry_in=delays)
        _wait(retrying, counted, delays, steps, stale)


def _captured_but_not_confirmed(order: Order, steps: Steps, stale: list[Order]) -> None:
    """The capture did not confirm the order: another worker confirmed it with this very
    capture (go on), or it was cancelled, failed, expired or retried with a new payment while
    we charged (the capture is not wanted: refunded)."""
    payment = order.payment
    order.refresh_from_db()
    if order.payment_id == payment.pk and order.status not in (S.FAILED, S.CANCELLED):
        return  # read again: the next round takes it from where it is
    _settle(order, payment)
    if order.status not in (S.PENDING, S.RESERVED):
        steps[order.pk] = DONE


def _ship(orders: list[Order], steps: Steps, stale: list[Order]) -> None:
    ready = []
    for order in orders:
        if order.cancel_requested_at is not None:
            steps[order.pk] = DONE  # being cancelled: never pushed from now on
        elif order.payment.status != P.CAPTURED:
            events.shipment_withheld_event(order=order)
            steps[order.pk] = DONE
        else:
            ready.append(order)
    if not ready:
        return
    lines = {o.pk: [(line.product.sku, line.quantity) for line in order_lines(o)] for o in ready}
    try:
        for order in ready:
            checkpoint("order.ship.sending", order_id=order.pk)
        if len(ready) == 1:
            answers = {
                ready[0].pk: _answer(
                    lambda: shipment_push(order_ref=str(ready[0].uid), lines=lines[ready[0].pk])
                )
            }
        else:
            by_ref = shipments_push(shipments=[(str(o.uid), lines[o.pk]) for o in ready])
            answers = {o.pk: by_ref.get(str(o.uid)) for o in ready}
        for order in ready:
            checkpoint("order.ship.answered", order_id=order.pk)
    except WarehouseUnavailable as exc:
        _ship_later(ready, str(exc), steps, stale)
        return
    shipped = [o for o in ready if isinstance(answers[o.pk], Shipment)]
    for order in ready:
        answer = answers[order.pk]
        if isinstance(answer, WarehouseRejected):
            # order_cancelled: a cancellation asked the warehouse first; it finishes by itself.
            events.shipment_refused_event(
                order=order, code=answer.code, message=str(answer), details=answer.details
            )
            steps[order.pk] = DONE
        elif not isinstance(answer, Shipment):
            _ship_later([order], f"no answer for {order.uid}", steps, stale)
    if shipped:
        _fulfil(shipped, {o.pk: answers[o.pk] for o in shipped}, steps)


def _answer(push: Callable[[], Shipment]) -> Shipment | WarehouseRejected:
    try:
        return push()
    except WarehouseRejected as exc:
        return exc


def _fulfil(orders: list[Order], shipments: dict[int, Shipment], steps: Steps) -> None:
    """confirmed -> fulfilled with the warehouse's answers: the committed units leave once,
    and on_hand/version follow the newest level of each SKU by compare-and-set."""
    product_of = {line.product.sku: line.product_id for o in orders for line in order_lines(o)}
    levels: dict[int, ShippedLevel] = {}
    for order_id, shipment in shipments.items():
        for level in shipment.levels:
            pid = product_of.get(level.sku)
            if pid is not None and (pid not in levels or level.version > levels[pid].level.version):
                levels[pid] = ShippedLevel(order_id, level)
    moved = order_transition(
        orders=orders,
        event=E.FULFILLED,
        source=S.CONFIRMED,
        message="The warehouse acknowledged the shipment.",
        data_of={o.pk: {"shipment_id": shipments[o.pk].shipment_id} for o in orders},
        levels=levels,
    )
    for order in orders:
        steps[order.pk] = DONE
        if order not in moved:
            record_shipped_after_cancel(order=order, shipment=shipments[order.pk])


def _ship_later(orders: list[Order], error: str, steps: Steps, stale: list[Order]) -> None:
    """The warehouse gave no answer: each push is tried again with backoff, until its
    budget; then logged, for the reconciler to push again later."""
    given_up = [o for o in orders if o.ship_attempts >= settings.ORDER_SHIP_RETRY_MAX]
    for order in given_up:
        events.shipment_unanswered_event(order=order, error=error)
        steps[order.pk] = DONE
    retrying = [o for o in orders if o not in given_up]
    if retrying:
        delays = {
            o.pk: _delay(
                o.ship_attempts,
                settings.ORDER_SHIP_RETRY_BASE_SECONDS,
                settings.ORDER_SHIP_RETRY_MAX_DELAY,
            )
            for o in retrying
        }
        counted = events.shipment_retry_events(orders=retrying, error=error, retry_in=delays)
        _wait(retrying, counted, delays, steps, stale, shipping=True)


def _delay(attempt: int, base: float, cap: float) -> float:
    return round(backoff_delay(attempt, base=base, cap=cap), 3)


def _wait(
    orders: list[Order],
    counted: list[Order],
    delays: dict[int, float],
    steps: Steps,
    stale: list[Order],
    *,
    shipping: bool = False,
) -> None:
    """The orders counted wait `delays`; the others moved meanwhile and are read again."""
    for order in orders:
        if order in counted:
            steps[order.pk] = Step(done=False, retry_in=delays[order.pk], shipping=shipping)
        else:
            stale.append(order)


def _fail(
    orders: list[Order],
    event: OrderEvent,
    source: OrderStatus,
    steps: Steps,
    stale: list[Order],
    *,
    message: Callable[[Order], str],
    data: Callable[[Order], dict],
) -> None:
    """Fail the orders (decided in `source`, with their payments): done; those that moved
    meanwhile are read again."""
    if not orders:
        return
    moved = order_transition(
        orders=orders,
        event=event,
        source=source,
        message_of={o.pk: message(o) for o in orders},
        data_of={o.pk: data(o) for o in orders},
    )
    for order in orders:
        if order in moved:
            steps[order.pk] = DONE
        else:
            stale.append(order)


def _settle(order: Order, payment: Payment) -> None:
    """A charge the order does not want (failed, cancelled, or replaced): refunded if the
    provider holds a capture. Unanswered: the reconciler settles it later."""
    try:
        refunded = payment_settle(payment=payment)
    except (PaymentInDoubt, PaymentRefused) as exc:
        logger.warning(
            "order %s: payment %s not settled yet: %s",
            order.pk,
            payment.pk,
            exc,
            extra={"order_id": order.pk},
        )
        return
    if refunded:
        events.refunded_event(order=order, payment=payment)


def _settle_payments(order: Order) -> None:
    """A failed or cancelled order must not keep a captured charge."""
    if order.payment.attempts:
        _settle(order, order.payment)


# --- one order (the tasks of one order, and tests) ----------------------------------------


def order_process(*, order_id: int) -> Step:
    """Advance one order (a batch of one): reserve, charge, confirm (or fail and compensate),
    then push it to the warehouse; a push the warehouse does not answer goes on in
    orders.fulfil_order."""
    step = orders_advance([_load(order_id)])[order_id]
    if step.shipping:  # the warehouse did not answer: its own task retries the push
        enqueue_order_fulfilment(order_id, countdown=step.retry_in)
        return DONE
    return step


def order_ship(*, order_id: int) -> Step:
    """Push a confirmed order to the warehouse (idempotent there by order uid) and record the
    shipment. Retried with backoff while the warehouse gives no answer; a refusal (unknown SKU,
    not enough stock there) is logged and left for an operator. Safe to run twice."""
    order = _load(order_id)
    if order.status != S.CONFIRMED:
        return DONE
    steps: Steps = {}
    _ship([order], steps, [])
    return steps.get(order_id, DONE)
