"""HTTP client of the payment provider (the simulator by default, a real provider by URL).

Every call has a connect and a read timeout. An answer that does not say what happened
(timeout, connection error, 5xx, and the 4xx that mean "not now": 408, 409, 425, 429)
raises `PaymentGatewayUnavailable`: the charge may or may not exist, and the caller resolves
that by looking the charge up by its idempotency key.
"""

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

import requests
from django.conf import settings

from core.http import ServiceClient


@dataclass(frozen=True)
class ProviderCharge:
    status: str  # captured | declined | refunded
    provider_reference: str
    decline_reason: str | None = None


class PaymentGatewayUnavailable(Exception):
    """No definitive answer: the charge may or may not have been made."""


class PaymentGatewayRejected(Exception):
    """A definitive 4xx other than "not found": our request is wrong; retrying won't help."""


# 4xx answers that refuse nothing for good: the request timed out at the provider (408),
# another request with the same idempotency key is still being processed there and may yet
# capture (409, as Stripe answers), too early (425), too many requests (429). Each says as
# little about the charge as no answer at all.
TRY_AGAIN = frozenset({408, 409, 425, 429})
# What a charge can be, as far as we act on it; any other status says nothing final yet.
CHARGE_STATUSES = frozenset({"captured", "declined", "refunded"})
# The longest charge id we keep (Payment.provider_reference); a longer one is unreadable.
MAX_REFERENCE_LENGTH = 255


class PaymentGateway(ServiceClient):
    unavailable = PaymentGatewayUnavailable

    def create_charge(
        self, *, idempotency_key: str, amount: Decimal, currency: str, reference: str
    ) -> ProviderCharge:
        body = {
            "idempotency_key": idempotency_key,
            "amount": str(amount),
            "currency": currency,
            "reference": reference,
        }
        response = self._send("POST", "/charges", json=body)
        return self._charge(response)

    def get_charge(self, *, idempotency_key: str) -> ProviderCharge | None:
        """The charge stored for the key; None when the provider holds none (404)."""
        response = self._send("GET", f"/charges/{idempotency_key}")
        if response.status_code == 404:
            return None
        return self._charge(response)

    def refund(self, *, idempotency_key: str) -> ProviderCharge:
        return self._charge(self._send("POST", f"/charges/{idempotency_key}/refund"))

    @staticmethod
    def _charge(response: requests.Response) -> ProviderCharge:
        if response.status_code in TRY_AGAIN:
            raise PaymentGatewayUnavailable(f"HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code >= 400:
            raise PaymentGatewayRejected(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            data = response.json()
            charge = ProviderCharge(
                status=data["status"],
                provider_reference=data["id"],
                decline_reason=data.get("decline_reason"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PaymentGatewayUnavailable(f"unreadable answer: {response.text[:200]}") from exc
        if not isinstance(charge.status, str) or charge.status not in CHARGE_STATUSES:
            # e.g. "pending": says nothing final yet
            raise PaymentGatewayUnavailable(f"charge status {charge.status!r}: not final")
        reference, reason = charge.provider_reference, charge.decline_reason
        if not isinstance(reference, str) or not 0 < len(reference) <= MAX_REFERENCE_LENGTH:
            raise PaymentGatewayUnavailable(f"unreadable charge id: {reference!r:.100}")
        if reason is not None and not isinstance(reason, str):
            raise PaymentGatewayUnavailable(f"unreadable decline reason: {reason!r:.100}")
        return charge


@lru_cache(maxsize=1)
def get_gateway() -> PaymentGateway:
    """One client (and connection pool) per process."""
    return PaymentGateway(
        settings.PAYMENT_API_URL,
        connect_timeout=settings.PAYMENT_CONNECT_TIMEOUT,
        read_timeout=settings.PAYMENT_READ_TIMEOUT,
    )
