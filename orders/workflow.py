"""The order engine (docs/DESIGN.md, "Processing workflow"): one call advances a batch of
orders as far as each can go (reserve, charge, confirm, push to the warehouse) and says, for
each, whether and when to call again. It is the only way an order moves forward: a lone
order is a batch of one on the same code. Celery runs it (orders/tasks.py), the reconciler
asks it to judge a payment it looked up, tests call it directly.

Orders ready for the same step move together, in a few statements per step whatever their
number: their stock reserved under one lock of the rows (each order all its lines or none,
first come first served), their charges and lookups sent at once and recorded as they come
back, their confirmations, failures and shipments applied as sets.

Each order is isolated in its batch: a step that raises for the set is run again for each
order alone, and an order whose step still raises is logged, counted (`step_errors`) and
backed off while the others go on. Every retry is scheduled before its request goes out
(orders/scheduling.py), so a task cut by its time limit leaves each order with its budget
spent and its next try in the future, never with a retry that forgets its backoff.

Resumable from any state and safe to run twice, also concurrently: every step is a
transition guarded by the state it was decided for (orders/transitions.py), and the retry
budgets are counted on the order and its payment, not by the caller.
"""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import prefetch_related_objects

from core.checkpoints import checkpoint
from inventory.fulfilment import Shipment, WarehouseRejected, WarehouseUnavailable, shipments_push
from inventory.models import MovementReason
from inventory.services import stock_apply_warehouse_levels
from inventory.types import ShippedLevel
from orders import events
from orders.models import Order, OrderEvent, OrderStatus
from orders.scheduling import (
    Ahead,
    RetryPolicy,
    error_policy,
    orders_park,
    orders_retry_later,
    payment_policy,
    ship_policy,
    stock_policy,
)
from orders.selectors import LINES_WITH_PRODUCTS, order_lines
from orders.transitions import Moved, order_transition
from payments.charges import Tried, payments_try
from payments.models import Payment, PaymentStatus
from payments.services import (
    UNDECIDED,
    PaymentInDoubt,
    PaymentRefused,
    payment_settle,
    payments_count_tries,
)

logger = logging.getLogger(__name__)

S = OrderStatus
E = OrderEvent
P = PaymentStatus
ROUNDS = 6  # steps an order may take in one call: reserve, pay, ship, and reads again
# The database itself failing, and the task's time limit, are no order's fault: they end the
# batch (its claim runs out; the task's retry policy takes over).
NOT_ONE_ORDERS_FAULT = (OperationalError, InterfaceError, SoftTimeLimitExceeded)
# Payments settled, or voided, for an order that no longer wants them: judge the order again.
UNWANTED = (P.REFUNDED, P.REFUND_IN_DOUBT, P.VOIDED)


@dataclass(frozen=True)
class Step:
    """What the caller should do next for an order: nothing (done), or call again in
    `retry_in` seconds."""

    done: bool
    retry_in: float | None = None


DONE = Step(done=True)


@dataclass
class _Batch:
    """The orders' steps decided so far, and those found moved by another actor (read again
    and judged afresh in the next round)."""

    steps: dict[int, Step] = field(default_factory=dict)
    stale: list[Order] = field(default_factory=list)
    # Orders whose next step (run at once) had its retry scheduled, and its attempt counted,
    # by the transition that brought them to it: the seconds it waits if that step gets no
    # answer.
    ahead: dict[int, float] = field(default_factory=dict)

    def done(self, order: Order) -> None:
        self.steps[order.pk] = DONE

    def wait(self, order: Order, seconds: float) -> None:
        self.steps[order.pk] = Step(done=False, retry_in=seconds)

    def again(self, order: Order) -> None:
        self.stale.append(order)


def orders_advance(orders: list[Order]) -> dict[int, Step]:
    """Advance every order (loaded with its payment) as far as it can go; returns each one's
    Step. No transaction is held across the payment or the warehouse calls.

    Each round takes every order one step from its status, the orders of one status
    together; an order found moved by another actor is read again, and the next round
    judges it from where it is."""
    prefetch_related_objects(orders, LINES_WITH_PRODUCTS)  # every order's lines, one query
    batch = _Batch()
    for _ in range(ROUNDS):
        live = [o for o in orders if o.pk not in batch.steps]
        if not live:
            break
        batch.stale = []
        for order in live:
            if order.is_final:
                batch.done(order)
        for status, step in ((S.PENDING, _reserve), (S.RESERVED, _pay), (S.CONFIRMED, _ship)):
            ready = [o for o in live if o.status == status and o.pk not in batch.steps]
            if ready:
                _isolated(step, status, ready, batch)
        for order in {o.pk: o for o in batch.stale}.values():
            _reload(order)
    return {order.pk: batch.steps.get(order.pk, DONE) for order in orders}


def _reload(order: Order) -> None:
    order.refresh_from_db()
    order.payment = Payment.objects.get(pk=order.payment_id)


StepFunction = Callable[[list[Order], _Batch], None]


def _isolated(step: StepFunction, status: str, orders: list[Order], batch: _Batch) -> None:
    """Run `step` for the set; if it raises, for each order alone, and an order whose step
    still raises is logged, counted and backed off: one order's fault stays its own."""
    try:
        step(orders, batch)
        return
    except NOT_ONE_ORDERS_FAULT:
        raise
    except Exception as exc:
        if len(orders) == 1:
            _step_failed(orders[0], exc, batch)
            return
        logger.warning(
            "a %s step of %s orders failed (%s: %s); each order goes on alone",
            status,
            len(orders),
            type(exc).__name__,
            exc,
        )
    for order in orders:
        if order.pk in batch.steps:
            continue  # decided before the set's step failed
        _reload(order)
        if order.status != status:
            continue  # moved by the set's step before it failed: the next round takes it
        try:
            step([order], batch)
        except NOT_ONE_ORDERS_FAULT:
            raise
        except Exception as exc:
            _step_failed(order, exc, batch)


def _step_failed(order: Order, exc: Exception, batch: _Batch) -> None:
    error = f"{type(exc).__name__}: {exc}"
    logger.error(
        "order %s: its %s step failed: %s",
        order.pk,
        order.status,
        error,
        exc_info=exc,
        extra={"order_id": order.pk},
    )
    policy = error_policy()
    delay = policy.delay(order.step_errors)
    with transaction.atomic():
        counted = orders_retry_later(
            [order], status=order.status, retry_in={order.pk: delay}, counter="step_errors"
        )
        if not counted:
            batch.again(order)  # it moved meanwhile: judged afresh
            return
        spent = policy.exhausted(order.step_errors)
        if spent:
            orders_park([order], status=order.status)
        events.step_failed_event(order=order, error=error, retry_in=None if spent else delay)
    if spent:
        batch.done(order)
    else:
        batch.wait(order, delay)


# --- reserve -----------------------------------------------------------------------------------


def _reserve(orders: list[Order], batch: _Batch) -> None:
    asked = {
        o.pk: {"quantities": {str(line.product_id): line.quantity for line in order_lines(o)}}
        for o in orders
    }
    # The charge follows at once: its first try's retry is scheduled with the reservation.
    first_try = Ahead({o.pk: payment_policy().delay(o.payment.tries) for o in orders})
    text = "Stock reserved for every line."
    moved = _transition(orders, E.RESERVED, S.PENDING, text, asked, ahead=first_try)
    batch.ahead.update((o.pk, first_try.retry_in[o.pk]) for o in moved)
    short = {pk: [s.as_dict() for s in lacking] for pk, lacking in moved.short.items()}
    for order in orders:
        if order not in moved and order.pk not in short:
            batch.again(order)
    waiting = [o for o in orders if o.pk in short]
    policy = stock_policy()
    spent = [o for o in waiting if policy.exhausted(o.stock_attempts + 1)]
    for order in spent:
        checkpoint("order.out_of_stock.decided", order_id=order.pk)
    _fail(
        spent,
        E.OUT_OF_STOCK,
        S.PENDING,
        batch,
        message=lambda o: f"Not enough stock after {o.stock_attempts + 1} attempt(s).",
        data=lambda o: {"attempts": o.stock_attempts + 1, "shortages": short[o.pk]},
    )
    retrying = [o for o in waiting if o not in spent]
    delays = {o.pk: policy.delay(o.stock_attempts) for o in retrying}
    with transaction.atomic():
        counted = orders_retry_later(
            retrying, status=S.PENDING, retry_in=delays, counter="stock_attempts"
        )
        events.stock_retry_events(orders=counted, shortages=short, retry_in=delays)
    _waiting(retrying, counted, delays, batch)


# --- pay ---------------------------------------------------------------------------------------


def _pay(orders: list[Order], batch: _Batch) -> None:
    """Settle each order's charge: what is known already is applied; the rest get a try,
    counted and their retry scheduled before anything is sent, then sent together and
    judged as their answers come back."""
    _apply_payments([o for o in orders if o.payment.status not in UNDECIDED], batch, push=True)
    undecided = [o for o in orders if o.payment.status in UNDECIDED]
    policy = payment_policy()
    _out_of_tries([o for o in undecided if policy.exhausted(o.payment.tries)], batch)
    trying = [o for o in undecided if not policy.exhausted(o.payment.tries)]
    if not trying:
        return
    for order in trying:
        checkpoint("payment.charge.start", payment_id=order.payment.pk)
    never_charged = {o.pk for o in trying if o.payment.attempts == 0}
    ahead = {o.pk: batch.ahead.pop(o.pk) for o in trying if o.pk in batch.ahead}
    later = [o for o in trying if o.pk not in ahead]
    delays = {**{o.pk: policy.delay(o.payment.tries) for o in later}, **ahead}
    with transaction.atomic():
        scheduled = orders_retry_later(later, status=S.RESERVED, retry_in=delays)
        scheduled += [o for o in trying if o.pk in ahead]
        counted = {p.pk for p in payments_count_tries(payments=[o.payment for o in scheduled])}
    mine = {o.payment.pk: o for o in scheduled if o.payment.pk in counted}
    for order in trying:
        if order.payment.pk not in mine:
            batch.again(order)  # moved, or another worker is trying it
    first = [o.payment for o in mine.values() if o.pk in never_charged]
    again = [o.payment for o in mine.values() if o.pk not in never_charged]
    for group in payments_try(first=first, again=again):
        _judge([mine[t.payment.pk] for t in group], {t.payment.pk: t for t in group}, delays, batch)


def _judge(
    orders: list[Order], tried: Mapping[int, Tried], delays: Mapping[int, float], batch: _Batch
) -> None:
    """The orders whose try just came back: refused for good (failed), settled (applied), or
    no definitive answer (their retry is scheduled already; out of tries, the reconciler
    asks from here on)."""
    refused = [o for o in orders if tried[o.payment.pk].refused]
    _fail(
        refused,
        E.PAYMENT_ERROR,
        S.RESERVED,
        batch,
        message=lambda o: "The payment service refused the charge request.",
        data=lambda o: {"attempt": o.payment.attempts, "error": tried[o.payment.pk].refused},
    )
    rest = [o for o in orders if o not in refused]
    _apply_payments([o for o in rest if o.payment.status not in UNDECIDED], batch, push=True)
    undecided = [o for o in rest if o.payment.status in UNDECIDED]
    policy = payment_policy()
    _out_of_tries([o for o in undecided if policy.exhausted(o.payment.tries)], batch)
    retrying = [o for o in undecided if not policy.exhausted(o.payment.tries)]
    with transaction.atomic():
        # The wait counts from the answer (or its timeout), as it was scheduled ahead of it.
        counted = orders_retry_later(retrying, status=S.RESERVED, retry_in=delays)
        events.payment_retry_events(
            orders=counted,
            errors={o.pk: tried[o.payment.pk].error for o in counted},
            retry_in=delays,
        )
    _waiting(retrying, counted, delays, batch)


def _out_of_tries(orders: list[Order], batch: _Batch) -> None:
    """No definitive answer within the budget: the reconciler asks the provider on its passes
    from here on, and releases the reservation when it expires."""
    if not orders:
        return
    with transaction.atomic():
        parked = orders_park(orders, status=S.RESERVED)
        events.payment_in_doubt_events(orders=parked)
    for order in orders:
        (batch.done if order in parked else batch.again)(order)


@dataclass
class Applied:
    """What judging settled payments did: the orders confirmed, and those failed."""

    confirmed: list[Order] = field(default_factory=list)
    failed: list[Order] = field(default_factory=list)


def orders_apply_payments(orders: list[Order]) -> Applied:
    """Judge reserved orders by what their payments now say (a lookup's answer, say): a
    capture confirms, a decline fails; anything else leaves them as they are. The
    reconciler's way of acting on what it learnt, through the engine's own judgement."""
    prefetch_related_objects(orders, LINES_WITH_PRODUCTS)
    return _apply_payments([o for o in orders if o.payment.status not in UNDECIDED], _Batch())


def _apply_payments(orders: list[Order], batch: _Batch, *, push: bool = False) -> Applied:
    """`push`: the engine pushes the orders it confirms at once (their first push scheduled
    and counted with the confirmation)."""
    applied = Applied()
    captured = [o for o in orders if o.payment.status == P.CAPTURED]
    if captured:
        charges = {
            o.pk: {"payment_reference": o.payment.provider_reference, "attempt": o.payment.attempts}
            for o in captured
        }
        policy = ship_policy()
        first_push = (
            Ahead({o.pk: policy.delay(o.ship_attempts) for o in captured}, "ship_attempts")
            if push
            else None
        )
        moved = _transition(
            captured, E.CONFIRMED, S.RESERVED, "Payment captured.", charges, ahead=first_push
        )
        if first_push:
            batch.ahead.update((o.pk, first_push.retry_in[o.pk]) for o in moved)
        applied.confirmed = list(moved)
        for order in captured:
            if order not in moved:
                _captured_but_not_confirmed(order, batch)
    declined = [o for o in orders if o.payment.status == P.DECLINED]
    applied.failed = _fail(
        declined,
        E.PAYMENT_DECLINED,
        S.RESERVED,
        batch,
        message=lambda o: f"Payment declined: {o.payment.last_error or 'no reason given'}.",
        data=lambda o: {
            "attempt": o.payment.attempts,
            "payment_reference": o.payment.provider_reference,
            "decline_reason": o.payment.last_error,
        },
    )
    for order in orders:
        if order.payment.status in UNWANTED:
            batch.again(order)
    return applied


def _captured_but_not_confirmed(order: Order, batch: _Batch) -> None:
    """The capture did not confirm the order: another worker confirmed it with this very
    capture (go on), or it was cancelled, failed, expired or retried with a new payment while
    we charged (the capture is not wanted: refunded)."""
    payment = order.payment
    _reload(order)
    if order.payment_id == payment.pk and order.status not in (S.FAILED, S.CANCELLED):
        return  # read again: the next round takes it from where it is
    _settle(order, payment)
    if order.status not in (S.PENDING, S.RESERVED):
        batch.done(order)


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


# --- ship --------------------------------------------------------------------------------------


def _ship(orders: list[Order], batch: _Batch) -> None:
    """Push the confirmed orders to the warehouse together, each push counted and its retry
    scheduled before it goes out; each order's answer applied on its own."""
    ready = []
    for order in orders:
        if order.cancel_requested_at is not None:
            batch.done(order)  # being cancelled: never pushed from now on
        elif order.payment.status != P.CAPTURED:
            events.shipment_withheld_event(order=order)
            orders_park([order], status=S.CONFIRMED)
            batch.done(order)
        else:
            ready.append(order)
    policy = ship_policy()
    # (an order confirmed just now had its push counted with the confirmation)
    spent = [o for o in ready if o.pk not in batch.ahead and policy.exhausted(o.ship_attempts)]
    _ship_unanswered(spent, "pushes spent", policy, batch)
    pushing = [o for o in ready if o not in spent]
    ahead = {o.pk: batch.ahead.pop(o.pk) for o in pushing if o.pk in batch.ahead}
    later = [o for o in pushing if o.pk not in ahead]
    delays = {**{o.pk: policy.delay(o.ship_attempts) for o in later}, **ahead}
    counted = orders_retry_later(
        later, status=S.CONFIRMED, retry_in=delays, counter="ship_attempts"
    )
    counted += [o for o in pushing if o.pk in ahead]
    for order in pushing:
        if order not in counted:
            batch.again(order)
    if not counted:
        return
    for order in counted:
        checkpoint("order.ship.sending", order_id=order.pk)
    try:
        answers = shipments_push(
            shipments=[
                (str(o.uid), [(line.product.sku, line.quantity) for line in order_lines(o)])
                for o in counted
            ]
        )
        for order in counted:
            checkpoint("order.ship.answered", order_id=order.pk)
    except WarehouseUnavailable as exc:
        answers = {str(o.uid): exc for o in counted}
    shipped = {o.pk: answer for o in counted if isinstance(answer := answers[str(o.uid)], Shipment)}
    for order in counted:
        answer = answers[str(order.uid)]
        if isinstance(answer, WarehouseRejected):
            # order_cancelled: a cancellation asked the warehouse first; it finishes by itself.
            with transaction.atomic():
                orders_park([order], status=S.CONFIRMED)
                events.shipment_refused_event(
                    order=order, code=answer.code, message=str(answer), details=answer.details
                )
            batch.done(order)
    unanswered = [o for o in counted if isinstance(answers[str(o.uid)], WarehouseUnavailable)]
    for error, group in _by_error(unanswered, answers).items():
        _ship_later(group, error, delays, policy, batch)
    if shipped:
        orders_fulfil([o for o in counted if o.pk in shipped], shipped)
        for order in counted:
            if order.pk in shipped:
                batch.done(order)


def _by_error(orders: list[Order], answers: Mapping[str, object]) -> dict[str, list[Order]]:
    grouped: dict[str, list[Order]] = {}
    for order in orders:
        grouped.setdefault(str(answers[str(order.uid)]), []).append(order)
    return grouped


def _ship_later(
    orders: list[Order],
    error: str,
    delays: Mapping[int, float],
    policy: RetryPolicy,
    batch: _Batch,
) -> None:
    """No answer from the warehouse: pushed again after its backoff, or, its pushes spent,
    left for the reconciler to push again later."""
    spent = [o for o in orders if policy.exhausted(o.ship_attempts)]
    _ship_unanswered(spent, error, policy, batch)
    retrying = [o for o in orders if o not in spent]
    with transaction.atomic():
        # The wait counts from the answer (or its timeout), as it was scheduled ahead of it.
        counted = orders_retry_later(retrying, status=S.CONFIRMED, retry_in=delays)
        events.shipment_retry_events(orders=counted, error=error, retry_in=delays)
    _waiting(retrying, counted, delays, batch)


def _ship_unanswered(orders: list[Order], error: str, policy: RetryPolicy, batch: _Batch) -> None:
    if not orders:
        return
    with transaction.atomic():
        parked = orders_park(orders, status=S.CONFIRMED)
        events.shipment_unanswered_events(orders=parked, error=error)
    for order in orders:
        (batch.done if order in parked else batch.again)(order)


def orders_fulfil(orders: list[Order], shipments: Mapping[int, Shipment]) -> list[Order]:
    """confirmed -> fulfilled with the warehouse's answers (by order id): the committed units
    leave once, and on_hand/version follow the newest level of each SKU by compare-and-set.
    An order found cancelled meanwhile (which the cancellation's question to the warehouse
    is there to prevent) keeps its status: the warehouse's levels are recorded and the event
    logged for an operator. Returns the orders fulfilled."""
    product_of = {line.product.sku: line.product_id for o in orders for line in order_lines(o)}
    levels: dict[int, ShippedLevel] = {}
    for order_id, shipment in shipments.items():
        for level in shipment.levels:
            pid = product_of.get(level.sku)
            if pid is not None and (pid not in levels or level.version > levels[pid].level.version):
                levels[pid] = ShippedLevel(order_id, level)
    shipped = {o.pk: {"shipment_id": shipments[o.pk].shipment_id} for o in orders}
    text = "The warehouse acknowledged the shipment."
    moved = _transition(orders, E.FULFILLED, S.CONFIRMED, text, shipped, levels=levels)
    for order in orders:
        if order not in moved:
            _shipped_after_cancel(order, shipments[order.pk])
    return list(moved)


def _shipped_after_cancel(order: Order, shipment: Shipment) -> None:
    order.refresh_from_db(fields=["status", "failure_reason", "cancel_requested_at"])
    if order.status == S.CANCELLED:
        with transaction.atomic():
            stock_apply_warehouse_levels(
                levels=shipment.levels, order_id=order.pk, reason=MovementReason.SHIPMENT_ANSWER
            )
            events.shipped_after_cancel_event(order=order, shipment_id=shipment.shipment_id)


# --- shared ------------------------------------------------------------------------------------


def _transition(
    orders: list[Order],
    event: OrderEvent,
    source: OrderStatus,
    message: str,
    data_of: Mapping[int, dict],
    **more,
) -> Moved:
    """The transition of the engine's step (orders/transitions.py), by the system."""
    return order_transition(
        orders=orders, event=event, source=source, message=message, data_of=data_of, **more
    )


def _waiting(
    orders: list[Order], counted: list[Order], delays: Mapping[int, float], batch: _Batch
) -> None:
    """The orders counted wait `delays`; the others moved meanwhile and are read again."""
    for order in orders:
        if order in counted:
            batch.wait(order, delays[order.pk])
        else:
            batch.again(order)


def _fail(
    orders: list[Order],
    event: OrderEvent,
    source: OrderStatus,
    batch: _Batch,
    *,
    message: Callable[[Order], str],
    data: Callable[[Order], dict],
) -> list[Order]:
    """Fail the orders (decided in `source`, with their payments): done; those that moved
    meanwhile are read again. Returns those failed."""
    if not orders:
        return []
    moved = order_transition(
        orders=orders,
        event=event,
        source=source,
        message_of={o.pk: message(o) for o in orders},
        data_of={o.pk: data(o) for o in orders},
    )
    for order in orders:
        if order in moved:
            batch.done(order)
        else:
            batch.again(order)
    return list(moved)
