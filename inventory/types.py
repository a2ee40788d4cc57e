"""What the warehouse tells us, as the rest of the system sees it (the client in
inventory/warehouse.py decodes its answers into these)."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SkuLevel:
    sku: str
    on_hand: int
    version: int


@dataclass(frozen=True)
class ShippedLevel:
    """A SKU's level as a shipment's answer gave it, and the order that shipment was for
    (which the stock ledger refers the change to)."""

    order_id: int
    level: SkuLevel


@dataclass(frozen=True)
class RejectedRow:
    """A row of the warehouse's answer that does not make sense (a negative count, one past
    any integer column, not a number): skipped and reported, never applied."""

    sku: str
    reason: str


@dataclass(frozen=True)
class StockPage:
    levels: list[SkuLevel]
    next_after: str | None
    rejected: list[RejectedRow] = field(default_factory=list)


@dataclass(frozen=True)
class Shipment:
    shipment_id: str
    levels: list[SkuLevel]  # each SKU's on_hand/version right after this shipment


class WarehouseUnavailable(Exception):
    """No definitive answer: timeout, connection error, 5xx or an unreadable answer."""


class WarehouseRejected(Exception):
    """A definitive refusal, with the warehouse's error code."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        self.status, self.code, self.details = status, code, details or {}
        super().__init__(f"HTTP {status} {code}: {message}")
