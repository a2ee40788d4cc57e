"""Periodic tasks that must exist on a fresh install, registered with django-celery-beat's
database scheduler (so operators can edit them in the admin, and edits are kept)."""

import json
from typing import Any


def ensure_periodic_task(
    *,
    name: str,
    task: str,
    every_seconds: int,
    kwargs: dict[str, Any] | None = None,
    description: str = "",
    using: str = "default",
) -> None:
    """Create the periodic task if it does not exist yet; never overwrite an existing one."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    if PeriodicTask.objects.using(using).filter(name=name).exists():
        return
    interval, _ = IntervalSchedule.objects.using(using).get_or_create(
        every=every_seconds, period=IntervalSchedule.SECONDS
    )
    PeriodicTask.objects.using(using).create(
        name=name,
        task=task,
        interval=interval,
        kwargs=json.dumps(kwargs or {}),
        # A run that could not start within one interval is dropped: the next one does it.
        expire_seconds=every_seconds,
        description=description,
    )
