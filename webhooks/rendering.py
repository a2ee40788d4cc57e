"""The body of an event: its id, type and time, what happened, and the subject (the order, or
the product's stock) as the API shows it. The apps that own the subjects register how to
render them (in their AppConfig.ready), so this app depends on none of them."""

import json
from collections import defaultdict
from collections.abc import Callable, Iterable

from django.core.serializers.json import DjangoJSONEncoder

from webhooks.models import Event

# For a type prefix ("order" of "order.created"): the key the subject goes under in `data`,
# and how to render many subjects at once (ids -> their API representation).
Renderer = Callable[[list[int]], dict[int, dict]]
_renderers: dict[str, tuple[str, Renderer]] = {}


def register_renderer(prefix: str, *, key: str, render: Renderer) -> None:
    _renderers[prefix] = (key, render)


def event_bodies(events: Iterable[Event]) -> dict[int, str]:
    """Each event's JSON body (event id -> text), its subjects rendered in one go per kind. A
    subject that no longer exists is null."""
    events = list(events)
    subjects: dict[str, set[int]] = defaultdict(set)
    for event in events:
        subjects[event.type.partition(".")[0]].add(event.subject_id)
    rendered = {prefix: _renderers[prefix][1](sorted(ids)) for prefix, ids in subjects.items()}
    bodies = {}
    for event in events:
        prefix = event.type.partition(".")[0]
        key = _renderers[prefix][0]
        body = {
            "id": str(event.uid),
            "type": event.type,
            "created_at": event.created_at,
            "data": {**event.data, key: rendered[prefix].get(event.subject_id)},
        }
        bodies[event.pk] = json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":"))
    return bodies
