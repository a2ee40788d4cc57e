"""Stock transitions. Each one runs inside the caller's transaction (they assert one is open)
and locks the stock rows through `lock_objects`, so they compose with the order transition
that belongs to them. None of them may make `available` negative."""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from catalog.models import Product
from core.errors import Conflict, DomainError
from inventory.lock_objects import stock_levels_for_update, stock_lock_cte
from inventory.models import StockLevel
from inventory.types import SkuLevel

K = TypeVar("K")


@dataclass(frozen=True)
class Shortage:
    product_id: int
    requested: int
    available: int


class InsufficientStock(Conflict):
    code = "insufficient_stock"
    default_message = "Not enough stock for every line."

    def __init__(self, shortages: list[Shortage]):
        self.shortages = shortages
        super().__init__(
            details={
                "shortages": [
                    {"product_id": s.product_id, "requested": s.requested, "available": s.available}
                    for s in shortages
                ]
            }
        )


class StockInvariantViolation(DomainError):
    """Releasing or committing more than is held: a bug or a double transition."""

    code = "stock_invariant_violation"
    status_code = 500


# One statement per stock transition: the order's rows are locked in ascending product id
# order (lock_objects.stock_lock_cte), then each is changed only where its guard, judged on
# the locked row, holds; the rows changed are returned, so the caller learns which lines
# held. Works on PostgreSQL and SQLite (UPDATE ... FROM, RETURNING).
_TRANSITION_SQL = """
WITH {locked}, line(pid, quantity, new_on_hand, new_version) AS (VALUES {rows})
UPDATE inventory_stocklevel AS s SET {assignments}, updated_at = %s
FROM line JOIN locked ON locked.id = line.pid
WHERE s.product_id = line.pid AND {guard}
RETURNING product_id
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
) -> set[int]:
    """Apply `assignments` (SQL over the row `s` and its `line`: quantity, and
    new_on_hand/new_version from `levels` or NULL) to the stock row of every line whose
    `guard` holds (SQL over `line` and `locked`: the row's buckets once locked); returns the
    product ids changed."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("stock transitions must run inside a transaction")
    if not quantities:
        return set()
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
        return {product_id for (product_id,) in cursor.fetchall()}


def stock_reserve(*, quantities: Mapping[int, int]) -> None:
    """Reserve every line or none: `reserved += q` only if `available >= q` for each.

    Raises InsufficientStock (naming every short line) and changes nothing otherwise.
    Runs in the caller's transaction; rows locked in ascending product id order.
    """

    reserved = _change(
        quantities,
        assignments="reserved = s.reserved + line.quantity",
        guard="locked.available >= line.quantity",
    )
    if len(reserved) == len(quantities):
        return
    if reserved:  # some lines held and others did not: give those back
        _move({pid: quantities[pid] for pid in reserved}, take_from="reserved")
    short = {pid: q for pid, q in quantities.items() if pid not in reserved}
    available = dict(
        StockLevel.objects.filter(product_id__in=short).values_list("product_id", "available")
    )
    raise InsufficientStock(
        [Shortage(pid, q, max(available.get(pid, 0), 0)) for pid, q in sorted(short.items())]
    )


@dataclass(frozen=True)
class Allocation(Generic[K]):
    reserved: list[K]  # the requests that got every line, in the order given
    short: dict[K, list[Shortage]]  # the others, and which of their lines were short


def stock_allocate(*, requests: Sequence[tuple[K, Mapping[int, int]]]) -> Allocation[K]:
    """Reserve stock for as many of `requests` (key, quantities per product) as fit, first
    come first served in the order given, each all its lines or none.

    Two statements however many requests: the rows of every product asked for are locked
    once, in ascending product id order, with their `available` read as locked; the
    requests that fit are chosen here; one statement adds their units to `reserved` (guarded
    on the locked rows again). Runs in the caller's transaction.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("stock transitions must run inside a transaction")
    product_ids = sorted({pid for _, quantities in requests for pid in quantities})
    available = dict(stock_levels_for_update(product_ids).values_list("product_id", "available"))
    reserved: list[K] = []
    short: dict[K, list[Shortage]] = {}
    totals: dict[int, int] = defaultdict(int)
    for key, quantities in requests:
        lacking = [
            Shortage(pid, q, max(available.get(pid, 0), 0))
            for pid, q in sorted(quantities.items())
            if available.get(pid, 0) < q
        ]
        if lacking:
            short[key] = lacking
            continue
        reserved.append(key)
        for pid, q in quantities.items():
            available[pid] -= q
            totals[pid] += q
    changed = _change(
        totals,
        assignments="reserved = s.reserved + line.quantity",
        guard="locked.available >= line.quantity",
    )
    _raise_unless_all(totals, changed, held="available")
    return Allocation(reserved, short)


def stock_release(*, quantities: Mapping[int, int]) -> None:
    """Give reserved units back: `reserved -= q` (decline, cancel, expiry)."""
    _move(quantities, take_from="reserved")


def stock_confirm(*, quantities: Mapping[int, int]) -> None:
    """Payment captured: `reserved -= q; committed += q`."""
    _move(quantities, take_from="reserved", give_to="committed")


def stock_release_committed(*, quantities: Mapping[int, int]) -> None:
    """A confirmed order cancelled before shipping: `committed -= q`."""
    _move(quantities, take_from="committed")


def _move(quantities: Mapping[int, int], *, take_from: str, give_to: str | None = None) -> None:
    assignments = f"{take_from} = s.{take_from} - line.quantity"
    if give_to:
        assignments += f", {give_to} = s.{give_to} + line.quantity"
    moved = _change(
        quantities, assignments=assignments, guard=f"locked.{take_from} >= line.quantity"
    )
    _raise_unless_all(quantities, moved, held=take_from)


def _raise_unless_all(quantities: Mapping[int, int], changed: set[int], *, held: str) -> None:
    """A line whose units were not held: the caller's transaction must roll back (it does, as
    this propagates), since the other lines may have changed."""
    missing = sorted(set(quantities) - changed)
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


def stock_set_from_warehouse(*, product_id: int, on_hand: int, version: int) -> bool:
    """Compare-and-set of the warehouse's `on_hand` for one product: applied only when
    `version` is newer than the stored one. Returns whether it applied. Safe to repeat."""
    updated = StockLevel.objects.filter(Q(product_id=product_id) & Q(version__lt=version)).update(
        on_hand=on_hand, version=version, updated_at=timezone.now()
    )
    if updated:
        return True
    _, created = StockLevel.objects.get_or_create(
        product_id=product_id, defaults={"on_hand": on_hand, "version": version}
    )
    return created


def stock_ship(*, quantities: Mapping[int, int], levels: Mapping[int, SkuLevel]) -> None:
    """The warehouse shipped an order: `committed -= q`, and each product's `on_hand` and
    `version` from the shipment's answer by compare-and-set (a newer snapshot may already
    have applied them). Runs in the caller's transaction, which must make it happen once."""
    newer = "line.new_version > s.version"
    shipped = _change(
        quantities,
        assignments=(
            "committed = s.committed - line.quantity, "
            f"on_hand = CASE WHEN {newer} THEN line.new_on_hand ELSE s.on_hand END, "
            f"version = CASE WHEN {newer} THEN line.new_version ELSE s.version END"
        ),
        guard="locked.committed >= line.quantity",
        levels=levels,
    )
    _raise_unless_all(quantities, shipped, held="committed")


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
WHERE s.product_id = p.id AND s.version < incoming.new_version
RETURNING product_id, available
"""


@transaction.atomic
def stock_apply_warehouse_levels(*, levels: Iterable[SkuLevel]) -> BatchResult:
    """Apply a batch of the warehouse's snapshot in one transaction, set-based: a few
    statements per batch, however large. Per SKU by compare-and-set on `version`, so a stale
    snapshot never overwrites newer data. Safe to repeat (a repeat is all stale)."""
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
    # also the products that have a stock row.
    existing = set(stock_levels_for_update(product_ids.values()).values_list("pk", flat=True))
    rows = ", ".join(["(%s, CAST(%s AS integer), CAST(%s AS bigint))"] * len(known))
    params = [value for lvl in known for value in (lvl.sku, lvl.on_hand, lvl.version)]
    with connection.cursor() as cursor:
        cursor.execute(_APPLY_SQL.format(rows=rows), [*params, _now_for_sql()])
        changed = dict(cursor.fetchall())
    result.applied = len(changed)
    sku_of = {pid: sku for sku, pid in product_ids.items()}
    result.oversold = sorted((sku_of[pid], avail) for pid, avail in changed.items() if avail < 0)

    untouched = [pid for pid in product_ids.values() if pid not in changed]
    if untouched:
        missing = [pid for pid in untouched if pid not in existing]
        result.stale_skipped = len(untouched) - len(missing)
        StockLevel.objects.bulk_create(
            [
                StockLevel(
                    product_id=pid,
                    on_hand=by_sku[sku_of[pid]].on_hand,
                    version=by_sku[sku_of[pid]].version,
                )
                for pid in missing
            ],
            ignore_conflicts=True,
        )
        result.created = len(missing)
    return result
