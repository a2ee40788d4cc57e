"""Stock transitions. Each one runs inside the caller's transaction (they assert one is open)
and locks the stock rows through `lock_objects`, so they compose with the order transition
that belongs to them. None of them may make `available` negative."""

from collections.abc import Mapping
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from inventory.lock_objects import stock_levels_for_update
from inventory.models import StockLevel
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
    StockLevel.objects.bulk_update(levels.values(), ["reserved", "updated_at"])


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
    StockLevel.objects.bulk_update(
        levels.values(), [take_from, *([give_to] if give_to else []), "updated_at"]
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
