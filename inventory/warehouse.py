"""HTTP client of the warehouse (the simulator by default, a real one by URL).

Timeouts on every call. `WarehouseUnavailable` means no definitive answer (retry);
`WarehouseRejected` is a definitive refusal with the warehouse's error code.
"""

from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

from core.http import ServiceClient


@dataclass(frozen=True)
class SkuLevel:
    sku: str
    on_hand: int
    version: int


@dataclass(frozen=True)
class StockPage:
    levels: list[SkuLevel]
    next_after: str | None


@dataclass(frozen=True)
class Shipment:
    shipment_id: str
    levels: list[SkuLevel]  # each SKU's on_hand/version right after this shipment


class WarehouseUnavailable(Exception):
    """Timeout, connection error, 5xx or an unreadable answer."""


class WarehouseRejected(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        self.status, self.code, self.details = status, code, details or {}
        super().__init__(f"HTTP {status} {code}: {message}")


def _levels(rows) -> list[SkuLevel]:
    return [SkuLevel(r["sku"], int(r["on_hand"]), int(r["version"])) for r in rows]


class WarehouseClient(ServiceClient):
    unavailable = WarehouseUnavailable

    def stock_page(self, *, after: str | None, limit: int) -> StockPage:
        params = {"limit": limit, **({"after": after} if after else {})}
        data = self._request("GET", "/stock", params=params)
        try:
            return StockPage(levels=_levels(data["results"]), next_after=data.get("next_after"))
        except (KeyError, TypeError, ValueError) as exc:
            raise WarehouseUnavailable(f"unreadable stock page: {exc!r}") from exc

    def ship(self, *, order_id: str, lines: list[tuple[str, int]]) -> Shipment:
        body = {
            "order_id": order_id,
            "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
        }
        data = self._request("POST", "/shipments", json=body)
        try:
            return Shipment(shipment_id=str(data["shipment_id"]), levels=_levels(data["lines"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise WarehouseUnavailable(f"unreadable shipment answer: {exc!r}") from exc

    def _request(self, method: str, path: str, **kwargs) -> dict:
        """The answer's JSON; a 4xx raises WarehouseRejected with the warehouse's error."""
        response = self._send(method, path, **kwargs)
        try:
            data = response.json()
        except ValueError as exc:
            raise WarehouseUnavailable(f"HTTP {response.status_code}: not JSON") from exc
        if response.status_code >= 400:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            raise WarehouseRejected(
                response.status_code,
                error.get("code", "rejected"),
                error.get("message", ""),
                error.get("details"),
            )
        return data


@lru_cache(maxsize=1)
def get_warehouse() -> WarehouseClient:
    """One client (and connection pool) per process."""
    return WarehouseClient(
        settings.WAREHOUSE_API_URL,
        connect_timeout=settings.WAREHOUSE_CONNECT_TIMEOUT,
        read_timeout=settings.WAREHOUSE_READ_TIMEOUT,
    )
