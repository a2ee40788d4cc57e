"""HTTP client of the warehouse (the simulator by default, a real one by URL).

Timeouts on every call. `WarehouseUnavailable` means no definitive answer (retry);
`WarehouseRejected` is a definitive refusal with the warehouse's error code. Rows that make no
sense are never passed on: a stock page reports them as rejected, one by one.
"""

from functools import lru_cache
from typing import Any, cast

from django.conf import settings

from core.http import ServiceClient
from inventory.types import (
    RejectedRow,
    Shipment,
    SkuLevel,
    StockPage,
    WarehouseRejected,
    WarehouseUnavailable,
)

# 4xx answers that refuse nothing for good (timed out, too early, too many requests): each
# says as little as no answer at all.
TRY_AGAIN = frozenset({408, 425, 429})
# The stock columns' range: a count of units fits a 32-bit integer, a version a 64-bit one.
MAX_ON_HAND = 2**31 - 1
MAX_VERSION = 2**63 - 1
MAX_SKU_LENGTH = 64


def _whole(value: Any, *, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def decode_level(row: Any) -> SkuLevel | RejectedRow:
    """One {sku, on_hand, version} row, checked field by field."""
    if not isinstance(row, dict):
        return RejectedRow(sku=repr(row)[:MAX_SKU_LENGTH], reason="not an object")
    sku = row.get("sku")
    if not isinstance(sku, str) or not 1 <= len(sku) <= MAX_SKU_LENGTH:
        return RejectedRow(sku=repr(sku)[:MAX_SKU_LENGTH], reason="sku is not a short string")
    on_hand = _whole(row.get("on_hand"), low=0, high=MAX_ON_HAND)
    if on_hand is None:
        return RejectedRow(
            sku=sku, reason=f"on_hand {row.get('on_hand')!r} is not 0..{MAX_ON_HAND}"
        )
    version = _whole(row.get("version"), low=0, high=MAX_VERSION)
    if version is None:
        return RejectedRow(sku=sku, reason=f"version {row.get('version')!r} is not a count")
    return SkuLevel(sku, on_hand, version)


def decode_levels(rows: Any) -> tuple[list[SkuLevel], list[RejectedRow]]:
    if not isinstance(rows, list):
        raise WarehouseUnavailable(f"unreadable answer: expected a list of rows, got {rows!r:.100}")
    decoded = [decode_level(row) for row in rows]
    return (
        [d for d in decoded if isinstance(d, SkuLevel)],
        [d for d in decoded if isinstance(d, RejectedRow)],
    )


class WarehouseClient(ServiceClient):
    unavailable = WarehouseUnavailable

    def stock_page(self, *, after: str | None, limit: int) -> StockPage:
        params = {"limit": limit, **({"after": after} if after else {})}
        data = self._request("GET", "/stock", params=params)
        levels, rejected = decode_levels(data.get("results"))
        next_after = data.get("next_after")
        if next_after is not None and not isinstance(next_after, str):
            raise WarehouseUnavailable(f"unreadable stock page: next_after {next_after!r:.100}")
        return StockPage(levels=levels, next_after=next_after, rejected=rejected)

    def ship_many(
        self, shipments: list[tuple[str, list[tuple[str, int]]]]
    ) -> dict[str, Shipment | WarehouseRejected | WarehouseUnavailable]:
        """Many shipments in one request (each idempotent by its order id): each order id's
        Shipment, its refusal, or WarehouseUnavailable where the answer for it cannot be
        read (the warehouse may have shipped it). Raises WarehouseUnavailable when the whole
        answer cannot be read, WarehouseRejected when the request itself was refused."""
        body = {
            "shipments": [
                {"order_id": order_id, "lines": [{"sku": s, "quantity": q} for s, q in lines]}
                for order_id, lines in shipments
            ]
        }
        data = self._request("POST", "/shipments/batch", json=body)
        results = data.get("results")
        if not isinstance(results, list):
            raise WarehouseUnavailable(f"unreadable batch answer: {data!r:.200}")
        asked = {order_id for order_id, _ in shipments}
        answers: dict[str, Shipment | WarehouseRejected | WarehouseUnavailable] = {}
        for result in results:
            if isinstance(result, dict) and str(result.get("order_id")) in asked:
                answers[str(result["order_id"])] = self._result(result)
        for order_id in asked - set(answers):
            answers[order_id] = WarehouseUnavailable(
                f"no readable answer for {order_id} in the batch answer"
            )
        return answers

    def _result(self, result: dict) -> Shipment | WarehouseRejected | WarehouseUnavailable:
        """One order's result in a batch answer."""
        if result.get("status") == "shipped":
            try:
                return self._shipment(result.get("shipment"))
            except WarehouseUnavailable as exc:
                return exc
        error = cast(dict, result.get("error")) if isinstance(result.get("error"), dict) else {}
        return WarehouseRejected(
            409,
            str(error.get("code", "rejected")),
            str(error.get("message", "")),
            error.get("details") if isinstance(error.get("details"), dict) else None,
        )

    def get_shipment(self, *, order_id: str) -> Shipment | None:
        """The shipment the warehouse holds for the order; None if it holds none."""
        try:
            return self._shipment(self._request("GET", f"/shipments/{order_id}"))
        except WarehouseRejected as exc:
            if exc.status == 404:
                return None
            raise

    def cancel_shipment(self, *, order_id: str) -> Shipment | None:
        """Ask the warehouse never to ship the order. None: it will not (it holds no shipment,
        and refuses any push of the order from now on); a Shipment: too late, it has shipped."""
        try:
            self._request("POST", f"/shipments/{order_id}/cancel")
        except WarehouseRejected as exc:
            if exc.code == "already_shipped":
                return self._shipment(exc.details.get("shipment"))
            raise
        return None

    def shipments_page(self, *, after: str | None, limit: int) -> tuple[list[dict], str | None]:
        """Every shipment the warehouse holds, a page at a time: (shipments, next_after)."""
        params = {"limit": limit, **({"after": after} if after else {})}
        data = self._request("GET", "/shipments", params=params)
        results = data.get("results")
        if not isinstance(results, list):
            raise WarehouseUnavailable(f"unreadable shipments page: {data!r:.100}")
        return results, data.get("next_after")

    @staticmethod
    def _shipment(data: Any) -> Shipment:
        try:
            levels, _rejected = decode_levels(data["lines"])  # a bad level is not applied
            return Shipment(shipment_id=str(data["shipment_id"]), levels=levels)
        except (KeyError, TypeError) as exc:
            raise WarehouseUnavailable(f"unreadable shipment answer: {exc!r}") from exc

    def _request(self, method: str, path: str, **kwargs) -> dict:
        """The answer's JSON object; a 4xx raises WarehouseRejected with the warehouse's
        error."""
        response = self._send(method, path, **kwargs)
        if response.status_code in TRY_AGAIN:
            raise WarehouseUnavailable(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            data = response.json()
        except ValueError as exc:
            raise WarehouseUnavailable(f"HTTP {response.status_code}: not JSON") from exc
        if not isinstance(data, dict):
            raise WarehouseUnavailable(f"HTTP {response.status_code}: not a JSON object")
        if response.status_code >= 400:
            error = data.get("error", {}) if isinstance(data.get("error"), dict) else {}
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
