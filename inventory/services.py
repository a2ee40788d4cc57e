"""Stock transitions. Each one runs inside the caller's transaction (they assert one is open)
and locks the stock rows through `lock_objects`, so they compose with the order transition
that belongs to them. None of them may make `available` negative."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from catalog.models import Product
from inventory.lock_objects import stock_levels_for_update
from inventory.models import StockLevel
from inventory.warehouse import SkuLevel
from orderproj.errors import Conflict, DomainError


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


def _save(rows: Iterable[StockLevel], fields: list[str]) -> None:
    """One UPDATE for all locked rows (bulk_update does not run auto_now itself)."""
    rows = list(rows)
    now = timezone.now()
    for row in rows:
        row.updated_at = now
    StockLevel.objects.bulk_update(rows, [*fields, "updated_at"])


def _locked(quantities: Mapping[int, int]) -> dict[int, StockLevel]:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("stock transitions must run inside a transaction")
    return {level.product_id: level for level in stock_levels_for_update(quantities)}


def stock_reserve(*, quantities: Mapping[int, int]) -> None:
    """Reserve every line or none: `reserved += q` only if `available >= q` for each.

    Raises InsufficientStock (naming every short line) and changes nothing otherwise.
    Runs in the caller's transaction; rows locked in ascending product id order.
    """
    levels = _locked(quantities)
    shortages = []
    for product_id, quantity in sorted(quantities.items()):
        level = levels.get(product_id)
        available = level.on_hand - level.reserved - level.committed if level else 0
        if available < quantity:
            shortages.append(Shortage(product_id, quantity, max(available, 0)))
    if shortages:
        raise InsufficientStock(shortages)
    for product_id, quantity in quantities.items():
        levels[product_id].reserved += quantity
    _save(levels.values(), ["reserved"])


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
    levels = _locked(quantities)
    for product_id, quantity in quantities.items():
        level = levels.get(product_id)
        held = getattr(level, take_from) if level else 0
        if held < quantity:
            raise StockInvariantViolation(
                f"product {product_id}: {take_from} is {held}, cannot take {quantity}"
            )
        setattr(level, take_from, held - quantity)
        if give_to:
            setattr(level, give_to, getattr(level, give_to) + quantity)
    _save(levels.values(), [take_from, *([give_to] if give_to else [])])


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
    locked = _locked(quantities)
    for product_id, quantity in quantities.items():
        row = locked.get(product_id)
        if row is None or row.committed < quantity:
            raise StockInvariantViolation(
                f"product {product_id}: committed is {row.committed if row else 0}, "
                f"cannot ship {quantity}"
            )
        row.committed -= quantity
        level = levels.get(product_id)
        if level is not None and level.version > row.version:
            row.on_hand, row.version = level.on_hand, level.version
    _save(locked.values(), ["committed", "on_hand", "version"])


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
WITH incoming(sku, on_hand, version) AS (VALUES {rows})
UPDATE inventory_stocklevel AS s
SET on_hand = incoming.on_hand, version = incoming.version, updated_at = %s
FROM incoming JOIN catalog_product AS p ON p.sku = incoming.sku
WHERE s.product_id = p.id AND s.version < incoming.version
RETURNING s.product_id, s.on_hand - s.reserved - s.committed
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
    # rows in join order and could deadlock with an order's reservation.
    list(stock_levels_for_update(product_ids.values()).values_list("pk", flat=True))
    rows = ", ".join(["(%s, CAST(%s AS integer), CAST(%s AS bigint))"] * len(known))
    params = [value for lvl in known for value in (lvl.sku, lvl.on_hand, lvl.version)]
    with connection.cursor() as cursor:
        cursor.execute(_APPLY_SQL.format(rows=rows), [*params, timezone.now()])
        changed = dict(cursor.fetchall())
    result.applied = len(changed)
    sku_of = {pid: sku for sku, pid in product_ids.items()}
    result.oversold = sorted((sku_of[pid], avail) for pid, avail in changed.items() if avail < 0)

    untouched = [pid for pid in product_ids.values() if pid not in changed]
    if untouched:
        existing = set(
            StockLevel.objects.filter(product_id__in=untouched).values_list("product_id", flat=True)
        )
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
