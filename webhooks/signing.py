"""Signatures in the Standard Webhooks scheme (https://www.standardwebhooks.com): HMAC-SHA256
over "<webhook-id>.<webhook-timestamp>.<body>" with the subscription's secret, sent as
`webhook-signature: v1,<base64>`. docs/webhooks.md shows receivers how to verify it."""

import base64
import hashlib
import hmac


def _key(secret: str) -> bytes:
    key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    if not key:
        raise ValueError("the subscription's secret holds no key")
    return key


def signature(secret: str, *, webhook_id: str, timestamp: int, body: str) -> str:
    signed = f"{webhook_id}.{timestamp}.{body}".encode()
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, *, webhook_id: str, timestamp: int, body: str) -> dict[str, str]:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(
            secret, webhook_id=webhook_id, timestamp=timestamp, body=body
        ),
    }
