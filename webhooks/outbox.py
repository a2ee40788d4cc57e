"""Writing events to the outbox, in the caller's transaction: the apps call these where a
change commits (an order's transition, a refund, a stock movement), so an event exists if and
only if its change does. After the commit the webhooks worker is woken.

Only the types some active subscription wants are written, and each event names the
subscriptions it is for: those active and receiving its type when it is written. They are
fixed with the event, so a subscription disabled, or a worker down, before it is sent
loses nothing: the event waits for them (docs/webhooks.md). Which subscriptions want what is
read once per WEBHOOK_TYPES_CACHE_SECONDS per process (and at once in the process that
changes a subscription), so a new subscription gets the events of changes made from then on."""

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from webhooks.dispatch import wake_webhook_workers
from webhooks.models import Event, EventType, Subscription

_wanted: tuple[float, dict[str, list[int]]] | None = None


def _subscribers() -> dict[str, list[int]]:
    """The active subscriptions' ids (ascending) by the event types they receive."""
    global _wanted
    now = time.monotonic()
    if _wanted is None or _wanted[0] <= now:
        rows = Subscription.objects.filter(is_active=True).order_by("pk")
        by_type: dict[str, list[int]] = defaultdict(list)
        for pk, types in rows.values_list("pk", "event_types"):
            for type in dict.fromkeys(types):
                by_type[type].append(pk)
        _wanted = (now + settings.WEBHOOK_TYPES_CACHE_SECONDS, dict(by_type))
    return _wanted[1]


def wanted_types() -> frozenset[str]:
    """The event types at least one active subscription receives."""
    return frozenset(_subscribers())


def forget_wanted_types(**kwargs) -> None:
    global _wanted
    _wanted = None


post_save.connect(forget_wanted_types, sender=Subscription)
post_delete.connect(forget_wanted_types, sender=Subscription)


def outbox_events(type: EventType, facts: Sequence[tuple[Any, dict[str, Any]]]) -> list[Event]:
    """Unsaved events of `type`, one per (subject id, or an Inserted one; what happened) of
    `facts`, for the caller to insert with its own rows, and then to wake the webhooks worker
    after the commit (`wake_after_commit`); none when no subscription wants the type. Each
    is for the subscriptions receiving the type now."""
    subscribers = _subscribers().get(type)
    if not facts or not subscribers:
        return []
    return [
        Event(type=type, subject_id=subject, data=data, subscription_ids=list(subscribers))
        for subject, data in facts
    ]


def outbox_write(type: EventType, data_of: Mapping[int, dict[str, Any]]) -> int:
    """Write events of `type` (one per subject id of `data_of`) in one INSERT, in the
    caller's transaction; returns how many."""
    events = outbox_events(type, list(data_of.items()))
    if events:
        Event.objects.bulk_create(events)
        wake_after_commit()
    return len(events)


def wake_after_commit() -> None:
    """Events were written: a webhooks worker takes them up once the transaction commits (at
    once outside one)."""
    transaction.on_commit(wake_webhook_workers)
