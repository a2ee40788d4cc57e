"""What a subscription must be, wherever it is written (admin form, API)."""

from django.core.exceptions import ValidationError

from webhooks.models import EventType


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
