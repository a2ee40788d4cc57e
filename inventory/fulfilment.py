"""Handing orders to the warehouse, for the order workflow: it calls these rather than the
HTTP client, and gets the warehouse's answers as inventory's own types. Each call talks HTTP,
so it runs outside any database transaction (the client refuses otherwise)."""

import uuid
from collections.abc import Iterator

from inventory.types import Shipment, WarehouseRejected, WarehouseUnavailable
from inventory.warehouse import get_warehouse

__all__ = [
    "Shipment",
    "WarehouseRejected",
    "WarehouseUnavailable",
    "shipment_cancel",
    "shipment_push",
    "shipments_push",
    "shipped_order_refs",
]


def shipment_push(*, order_ref: str, lines: list[tuple[str, int]]) -> Shipment:
    """Ship the order's lines (sku, quantity), once per `order_ref` whatever the retries:
    the warehouse answers a repeated push with the shipment it made. Raises
    WarehouseUnavailable (no answer: it may have shipped) or WarehouseRejected (refused, with
    the warehouse's code: unknown_sku, insufficient_stock, order_cancelled, ...)."""
    return get_warehouse().ship(order_id=order_ref, lines=lines)


def shipments_push(
    *, shipments: list[tuple[str, list[tuple[str, int]]]]
) -> dict[str, Shipment | WarehouseRejected]:
    """Ship many orders (order ref, lines) in one request: each order ref's Shipment or its
    refusal, each once whatever the retries. Raises WarehouseUnavailable when the warehouse
    gives no answer (any of them may have shipped)."""
    return get_warehouse().ship_many(shipments)


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
