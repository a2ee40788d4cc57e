"""Stock transitions. Each one runs inside the caller's transaction (they assert one is open)
and locks the stock rows through `lock_objects`, so they compose with the order transition
that belongs to them. None of them may make `available` negative.

Every change of a bucket is recorded in the ledger (`StockMovement`) in the same transaction:
one row per order and product for the changes orders cause, one per product for the
warehouse's, written by one INSERT however many rows the change moved. Each row carries the
levels right after it, walked back from the levels the change's own UPDATE returned.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from catalog.models import Product
from core.errors import DomainError
from inventory.lock_objects import stock_levels_for_update, stock_lock_cte
from inventory.models import MovementReason, StockLevel, StockMovement
from inventory.types import ShippedLevel, SkuLevel
from webhooks.models import EventType
from webhooks.outbox import outbox_write

R = MovementReason
# Units per product for each order a change is made for: {order id: {product id: units}}.
Holds = Mapping[int, Mapping[int, int]]
Levels = tuple[int, int, int]  # on_hand, reserved, committed


@dataclass(frozen=True)
class Shortage:
    """A line an order could not get: how many units it asked for, how many there were."""

    product_id: int
    requested: int
    available: int

    def as_dict(self) -> dict[str, int]:
        return {
            "product_id": self.product_id,
            "requested": self.requested,
            "available": self.available,
        }


class StockInvariantViolation(DomainError):
    """Releasing or committing more than is held: a bug or a double transition."""

    code = "stock_invariant_violation"
    status_code = 500


@dataclass(frozen=True)
class Move:
    """One row of the ledger to write: how much each bucket of a product changed, and why."""

    product_id: int
    reason: MovementReason
    on_hand: int = 0
    reserved: int = 0
    committed: int = 0
    order_id: int | None = None


def _record(
    moves: Sequence[Move],
    after: Mapping[int, Levels],
    *,
    actor_id: int | None = None,
    sync_run_id: int | None = None,
    note: str = "",
) -> None:
    """Write `moves` (one change, in the order its parts are to be read) to the ledger in one
    INSERT. `after` holds each product's levels once all of them applied, as the change's
    UPDATE returned them: each row's levels after are found walking back from there. The
    stock rows are still locked, so the ledger's order (by id) is the order of the changes."""
    running = {pid: list(levels) for pid, levels in after.items()}
    now = timezone.now()
    rows = []
    for move in reversed(moves):
        if not (move.on_hand or move.reserved or move.committed):
            continue
        level = running[move.product_id]
        rows.append(
            StockMovement(
                product_id=move.product_id,
                reason=move.reason,
                on_hand_change=move.on_hand,
                reserved_change=move.reserved,
                committed_change=move.committed,
                on_hand_after=level[0],
                reserved_after=level[1],
                committed_after=level[2],
                order_id=move.order_id,
                sync_run_id=sync_run_id,
                actor_id=actor_id,
                note=note,
                created_at=now,
            )
        )
        level[0] -= move.on_hand
        level[1] -= move.reserved
        level[2] -= move.committed
    rows.reverse()
    StockMovement.objects.bulk_create(rows)
    _record_stock_low(after, running)


def _record_stock_low(after: Mapping[int, Levels], before: Mapping[int, list[int]]) -> None:
    """stock.low for each product whose `available` this change took from above
    LOW_STOCK_THRESHOLD to at or below it (webhooks), in the change's transaction."""
    threshold = settings.LOW_STOCK_THRESHOLD
    crossed = {}
    for pid, (on_hand, reserved, committed) in after.items():
        now, was = on_hand - reserved - committed, before[pid][0] - before[pid][1] - before[pid][2]
        if now <= threshold < was:
            crossed[pid] = {"available": now, "previous_available": was, "threshold": threshold}
    if crossed:
        outbox_write(EventType.STOCK_LOW, crossed)


def _totals(orders: Holds) -> dict[int, int]:
    totals: dict[int, int] = defaultdict(int)
    for quantities in orders.values():
        for product_id, units in quantities.items():
            totals[product_id] += units
    return totals


def _order_moves(orders: Holds, reason: MovementReason, **sign: int) -> list[Move]:
    """One move per order and product, in order id order: `sign` says which buckets change
    and which way (reserved=+1: the units are added to reserved)."""
    return [
        Move(
            product_id,
            reason,
            order_id=order_id,
            **{bucket: direction * units for bucket, direction in sign.items()},
        )
        for order_id in sorted(orders)
        for product_id, units in sorted(orders[order_id].items())
    ]


# One statement per stock transition: the order's rows are locked in ascending product id
# order (lock_objects.stock_lock_cte), then each is changed only where its guard, judged on
# the locked row, holds; the rows changed are returned, so the caller learns which lines
# held. Works on PostgreSQL and SQLite (UPDATE ... FROM, RETURNING).
_TRANSITION_SQL = """
WITH {locked}, line(pid, quantity, new_on_hand, new_version) AS (VALUES {rows})
UPDATE inventory_stocklevel AS s SET {assignments}, updated_at = %s
FROM line JOIN locked ON locked.id = line.pid
WHERE s.product_id = line.pid AND {guard}
RETURNING product_id, on_hand, reserved, committed
"""
_LINE = "(CAST(%s AS bigint), CAST(%s AS integer), CAST(%s AS integer), CAST(%s AS bigint))"


def _now_for_sql():
    """Now, as the backend stores a datetime (SQLite: text without an offset, as the ORM
    writes it), for raw statements."""
    return connection.ops.adapt_datetimefield_value(timezone.now())


def _change(
    quantities: Mapping[int, int],
    *,
    assignments: str,
    guard: str,
    levels: Mapping[int, SkuLevel] | None = None,
) -> dict[int, Levels]:
    """Apply `assignments` (SQL over the row `s` and its `line`: quantity, and
    new_on_hand/new_version from `levels` or NULL) to the stock row of every line whose
    `guard` holds (SQL over `line` and `locked`: the row's buckets once locked); returns the
    levels after of each product changed."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("stock transitions must run inside a transaction")
    if not quantities:
        return {}
    locked, lock_params = stock_lock_cte(quantities)
    params: list = []
    for product_id, quantity in sorted(quantities.items()):
        level = (levels or {}).get(product_id)
        params += [
            product_id,
            quantity,
            *((level.on_hand, level.version) if level else (None, None)),
        ]
    sql = _TRANSITION_SQL.format(
        locked=locked,
        rows=", ".join([_LINE] * len(quantities)),
        assignments=assignments,
        guard=guard,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*lock_params, *params, _now_for_sql()])
        return {pid: (on_hand, reserved, committed) for pid, on_hand, reserved, committed in cursor}


@dataclass(frozen=True)
class Allocation:
    reserved: list[int]  # the orders that got every line, in the order given
    short: dict[int, list[Shortage]]  # the others, and which of their lines were short


def stock_reserve(*, orders: Holds, actor_id: int | None = None) -> Allocation:
    """Reserve stock for as many of `orders` ({order id: {product id: units}}) as fit, first
    come first served in the order given, each all its lines or none: `reserved += q` only
    where `available >= q`. The orders that did not fit, and their short lines, are in the
    result's `short`; nothing of theirs changed.

    Two statements however many orders: the rows of every product asked for are locked
    once, in ascending product id order, with their `available` read as locked; the orders
    that fit are chosen here; one statement adds their units to `reserved` (guarded on the
    locked rows again). Runs in the caller's transaction.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("stock transitions must run inside a transaction")
    product_ids = sorted({pid for quantities in orders.values() for pid in quantities})
    available = dict(stock_levels_for_update(product_ids).values_list("product_id", "available"))
    reserved: list[int] = []
    short: dict[int, list[Shortage]] = {}
    totals: dict[int, int] = defaultdict(int)
    for order_id, quantities in orders.items():
        lacking = [
            Shortage(pid, q, max(available.get(pid, 0), 0))
            for pid, q in sorted(quantities.items())
            if available.get(pid, 0) < q
        ]
        if lacking:
            short[order_id] = lacking
            continue
        reserved.append(order_id)
        for pid, q in quantities.items():
            available[pid] -= q
            totals[pid] += q
    changed = _change(
        totals,
        assignments="reserved = s.reserved + line.quantity",
        guard="locked.was_available >= line.quantity",
    )
    _raise_unless_all(totals, changed, held="available")
    moves = _order_moves({pid: orders[pid] for pid in reserved}, R.RESERVE, reserved=+1)
    _record(moves, changed, actor_id=actor_id)
    return Allocation(reserved, short)


def stock_release(*, orders: Holds, actor_id: int | None = None) -> None:
    """Give reserved units back: `reserved -= q` (decline, cancel, expiry)."""
    _move(orders, R.RELEASE, actor_id, reserved=-1)


def stock_confirm(*, orders: Holds, actor_id: int | None = None) -> None:
    """Payment captured: `reserved -= q; committed += q`."""
    _move(orders, R.COMMIT, actor_id, reserved=-1, committed=+1)


def stock_release_committed(*, orders: Holds, actor_id: int | None = None) -> None:
    """A confirmed order cancelled before shipping: `committed -= q`."""
    _move(orders, R.RELEASE, actor_id, committed=-1)


def _move(orders: Holds, reason: MovementReason, actor_id: int | None, **sign: int) -> None:
    """Move each order's units out of the bucket `sign` takes from (-1) and into the one it
    gives to (+1), if any."""
    take_from = next(bucket for bucket, direction in sign.items() if direction < 0)
    assignments = ", ".join(
        f"{bucket} = s.{bucket} {'+' if direction > 0 else '-'} line.quantity"
        for bucket, direction in sign.items()
    )
    quantities = _totals(orders)
    moved = _change(
        quantities, assignments=assignments, guard=f"locked.was_{take_from} >= line.quantity"
    )
    _raise_unless_all(quantities, moved, held=take_from)
    _record(_order_moves(orders, reason, **sign), moved, actor_id=actor_id)


def _raise_unless_all(
    quantities: Mapping[int, int], changed: Mapping[int, Levels], *, held: str
) -> None:
    """A line whose units were not held: the caller's transaction must roll back (it does, as
    this propagates), since the other lines may have changed."""
    missing = sorted(set(quantities) - set(changed))
    if missing:
        found = dict(
            StockLevel.objects.filter(product_id__in=missing).values_list("product_id", held)
        )
        raise StockInvariantViolation(
            "; ".join(
                f"product {pid}: {held} is {found.get(pid, 0)}, cannot take {quantities[pid]}"
                for pid in missing
            )
        )


def stock_set_from_warehouse(
    *,
    product_id: int,
    on_hand: int,
    version: int,
    reason: MovementReason = R.WAREHOUSE_SYNC,
    actor_id: int | None = None,
    note: str = "",
) -> bool:
    """Compare-and-set of the warehouse's `on_hand` for one product: applied only when
    `version` is newer than the stored one (a product without a stock row gets one). Returns
    whether it applied. Safe to repeat."""
    with transaction.atomic():
        row = stock_levels_for_update([product_id]).first()
        if row is None:
            if not _create_rows({product_id: (on_hand, version)}):  # created meanwhile
                return stock_set_from_warehouse(
                    product_id=product_id,
                    on_hand=on_hand,
                    version=version,
                    reason=reason,
                    actor_id=actor_id,
                    note=note,
                )
            row, before = StockLevel(product_id=product_id), 0
        elif row.version < version:
            before = row.on_hand
            StockLevel.objects.filter(pk=product_id).update(
                on_hand=on_hand,
                version=version,
                updated_at=timezone.now(),
            )
        else:
            return False
        _record(
            [Move(product_id, reason, on_hand=on_hand - before)],
            {product_id: (on_hand, row.reserved, row.committed)},
            actor_id=actor_id,
            note=note,
        )
    return True


@transaction.atomic
def stock_open(*, on_hand: Mapping[int, int], version: int = 1, note: str = "") -> None:
    """Stock rows for products that have none, each with its ledger's opening balance: stock
    that exists before its ledger does (a benchmark's or an import's). Two statements, in one
    transaction (the ledger's check at commit finds the openings there)."""
    now = timezone.now()
    StockLevel.objects.bulk_create(
        [
            StockLevel(product_id=pid, on_hand=units, version=version)
            for pid, units in on_hand.items()
        ],
        batch_size=5000,
    )
    StockMovement.objects.bulk_create(
        [
            StockMovement(
                product_id=pid,
                reason=R.OPENING,
                on_hand_change=units,
                on_hand_after=units,
                reserved_after=0,
                committed_after=0,
                note=note,
                created_at=now,
            )
            for pid, units in on_hand.items()
        ],
        batch_size=5000,
    )


def stock_ship(
    *, orders: Holds, levels: Mapping[int, ShippedLevel], actor_id: int | None = None
) -> None:
    """The warehouse shipped `orders`: `committed -= q`, and each product's `on_hand` and
    `version` from the shipment's answer by compare-and-set (a newer snapshot may already
    have applied them). Runs in the caller's transaction, which must make it happen once."""
    quantities = _totals(orders)
    before = dict(stock_levels_for_update(quantities).values_list("product_id", "on_hand"))
    newer = "line.new_version > s.version"
    shipped = _change(
        quantities,
        assignments=(
            "committed = s.committed - line.quantity, "
            f"on_hand = CASE WHEN {newer} THEN line.new_on_hand ELSE s.on_hand END, "
            f"version = CASE WHEN {newer} THEN line.new_version ELSE s.version END"
        ),
        guard="locked.was_committed >= line.quantity",
        levels={pid: answer.level for pid, answer in levels.items()},
    )
    _raise_unless_all(quantities, shipped, held="committed")
    answered = [
        Move(
            pid, R.SHIPMENT_ANSWER, on_hand=shipped[pid][0] - before[pid], order_id=answer.order_id
        )
        for pid, answer in sorted(levels.items())
        if pid in shipped
    ]
    _record(_order_moves(orders, R.SHIP, committed=-1) + answered, shipped, actor_id=actor_id)


@dataclass
class BatchResult:
    applied: int = 0
    stale_skipped: int = 0
    created: int = 0
    unknown_skus: list[str] = field(default_factory=list)
    oversold: list[tuple[str, int]] = field(default_factory=list)  # (sku, available)


# One statement applies a whole batch by compare-and-set: only rows whose stored version is
# older than the reported one change. Works on PostgreSQL and SQLite (UPDATE ... FROM).
_APPLY_SQL = """
WITH incoming(sku, new_on_hand, new_version) AS (VALUES {rows})
UPDATE inventory_stocklevel AS s
SET on_hand = incoming.new_on_hand, version = incoming.new_version, updated_at = %s
FROM incoming JOIN catalog_product AS p ON p.sku = incoming.sku
WHERE s.product_id = p.id AND s.version < incoming.new_version AND s.product_id IN ({locked})
RETURNING product_id, on_hand, reserved, committed
"""
# Stock rows for products that had none; a row another transaction created meanwhile stays
# as it is (and is reported as not created).
_CREATE_SQL = """
INSERT INTO inventory_stocklevel (product_id, on_hand, version, reserved, committed, updated_at)
VALUES {rows} ON CONFLICT DO NOTHING RETURNING product_id
"""


def _create_rows(new: Mapping[int, tuple[int, int]]) -> list[int]:
    """Stock rows with (on_hand, version) for products that have none; returns the products
    whose row this made (not those another transaction made meanwhile)."""
    now = _now_for_sql()
    with connection.cursor() as cursor:
        cursor.execute(
            _CREATE_SQL.format(rows=", ".join(["(%s, %s, %s, 0, 0, %s)"] * len(new))),
            [v for pid, (on_hand, version) in new.items() for v in (pid, on_hand, version, now)],
        )
        return sorted(pid for (pid,) in cursor)


@transaction.atomic
def stock_apply_warehouse_levels(
    *,
    levels: Iterable[SkuLevel],
    sync_run_id: int | None = None,
    order_id: int | None = None,
    reason: MovementReason = R.WAREHOUSE_SYNC,
) -> BatchResult:
    """Apply a batch of the warehouse's snapshot in one transaction, set-based: a few
    statements per batch, however large. Per SKU by compare-and-set on `version`, so a stale
    snapshot never overwrites newer data. Safe to repeat (a repeat is all stale). The ledger
    refers each change to `sync_run_id` or `order_id` (a shipment's answer)."""
    by_sku = {level.sku: level for level in levels}
    result = BatchResult()
    if not by_sku:
        return result
    product_ids = dict(Product.objects.filter(sku__in=by_sku).values_list("sku", "id"))
    result.unknown_skus = sorted(set(by_sku) - set(product_ids))
    known = [by_sku[sku] for sku in product_ids]
    if not known:
        return result

    # Lock first, in the one global order (ascending product id): the UPDATE alone would lock
    # rows in join order and could deadlock with an order's reservation. The rows locked are
    # also the products that have a stock row, with their on_hand before.
    before = dict(
        stock_levels_for_update(product_ids.values()).values_list("product_id", "on_hand")
    )
    rows = ", ".join(["(%s, CAST(%s AS integer), CAST(%s AS bigint))"] * len(known))
    params = [value for lvl in known for value in (lvl.sku, lvl.on_hand, lvl.version)]
    # Only the rows locked above: one another transaction creates meanwhile is left to the
    # next sync (its creation below does nothing), never changed out of lock order.
    locked = sorted(before) or [0]
    with connection.cursor() as cursor:
        cursor.execute(
            _APPLY_SQL.format(rows=rows, locked=", ".join(["%s"] * len(locked))),
            [*params, _now_for_sql(), *locked],
        )
        changed = {pid: (on_hand, res, com) for pid, on_hand, res, com in cursor}
    result.applied = len(changed)
    sku_of = {pid: sku for sku, pid in product_ids.items()}
    result.oversold = sorted(
        (sku_of[pid], on_hand - res - com)
        for pid, (on_hand, res, com) in changed.items()
        if on_hand - res - com < 0
    )
    moves = [
        Move(pid, reason, on_hand=changed[pid][0] - before[pid], order_id=order_id)
        for pid in sorted(changed)
    ]

    untouched = [pid for pid in product_ids.values() if pid not in changed]
    missing = sorted(pid for pid in untouched if pid not in before)
    result.stale_skipped = len(untouched) - len(missing)
    if missing:
        new = {pid: by_sku[sku_of[pid]] for pid in missing}
        created = _create_rows({pid: (lvl.on_hand, lvl.version) for pid, lvl in new.items()})
        result.created = len(created)
        moves += [Move(pid, reason, on_hand=new[pid].on_hand, order_id=order_id) for pid in created]
        changed.update({pid: (new[pid].on_hand, 0, 0) for pid in created})
    _record(moves, changed, sync_run_id=sync_run_id)
    return result
