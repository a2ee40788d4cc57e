"""What a subscription must be, wherever it is written (admin form, API)."""

import base64
import binascii

from django.core.exceptions import ValidationError

from webhooks.models import EventType

MIN_SECRET_BYTES = 24


def clean_secret(value: str) -> str:
    """`whsec_` and the base64 of at least 24 random bytes (what `new_secret` makes): a
    secret the signer cannot decode would fail every delivery to its subscription."""
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not value.startswith("whsec_") or len(key) < MIN_SECRET_BYTES:
        raise ValidationError(
            f"A secret is whsec_ and the base64 of at least {MIN_SECRET_BYTES} random bytes; "
            "leave the one generated, or paste one in that form."
        )
    return value


def clean_event_types(value) -> list[str]:
    """A non-empty list of known event types, each once, in the catalogue's order."""
    if not isinstance(value, list) or not value:
        raise ValidationError("Choose at least one event type.")
    unknown = sorted({str(v) for v in value} - set(EventType.values))
    if unknown:
        raise ValidationError(
            f"Unknown event type(s): {', '.join(unknown)}; choose from "
            f"{', '.join(EventType.values)}."
        )
    return [t for t in EventType.values if t in value]
