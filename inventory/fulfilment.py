"""Handing orders to the warehouse, for the order workflow: it calls these rather than the
HTTP client, and gets the warehouse's answers as inventory's own types. Each call talks HTTP,
so it runs outside any database transaction (the client refuses otherwise)."""

import uuid
from collections.abc import Iterator

from inventory.types import Shipment, WarehouseRejected, WarehouseUnavailable
from inventory.warehouse import get_warehouse

__all__ = [
    "Answer",
    "Shipment",
    "WarehouseRejected",
    "WarehouseUnavailable",
    "shipment_cancel",
    "shipments_push",
    "shipped_order_refs",
]


Answer = Shipment | WarehouseRejected | WarehouseUnavailable


def shipments_push(*, shipments: list[tuple[str, list[tuple[str, int]]]]) -> dict[str, Answer]:
    """Ship many orders (order ref, lines (sku, quantity)), each once whatever the retries:
    the warehouse answers a repeated push with the shipment it made. Returns each order ref's
    Shipment, its refusal (WarehouseRejected, with the warehouse's code: unknown_sku,
    insufficient_stock, order_cancelled, ...), or WarehouseUnavailable (no answer for it that
    can be read: it may have shipped). Raises WarehouseUnavailable when the warehouse gives
    no answer at all (any of them may have shipped).

    A refusal of the whole request is each order's answer: a request too large (413) is
    split in halves, pushed again, down to one order a request; any other refusal (400,
    401, ...) is each of its orders' refusal."""
    if not shipments:
        return {}
    try:
        return get_warehouse().ship_many(shipments)
    except WarehouseRejected as refused:
        if refused.status == 413 and len(shipments) > 1:
            half = len(shipments) // 2
            return {
                **shipments_push(shipments=shipments[:half]),
                **shipments_push(shipments=shipments[half:]),
            }
        return {order_ref: refused for order_ref, _ in shipments}


def shipment_cancel(*, order_ref: str) -> Shipment | None:
    """Make sure the warehouse never ships the order: None when it will not (from now on it
    refuses any push of it), its Shipment when it already has. Safe to repeat. Raises
    WarehouseUnavailable when it does not answer."""
    return get_warehouse().cancel_shipment(order_id=order_ref)


def shipped_order_refs(*, page_size: int = 1000) -> Iterator[uuid.UUID]:
    """The order refs of every shipment the warehouse holds (those that are uuids: ours), page
    by page. Raises WarehouseUnavailable or WarehouseRejected."""
    after = None
    while True:
        page, after = get_warehouse().shipments_page(after=after, limit=page_size)
        for shipment in page:
            try:
                yield uuid.UUID(str(shipment.get("order_id")))
            except ValueError:
                continue
        if not after:
            return
