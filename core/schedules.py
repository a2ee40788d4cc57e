"""The periodic tasks a deployment runs, created in django-celery-beat's database schedule on
migrate (so operators edit them in the admin, and their edits are kept). What they are is
defined in one place: settings.PERIODIC_TASKS."""

import json
from typing import Any

from django.conf import settings


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


def ensure_periodic_tasks(sender=None, using: str = "default", **kwargs) -> None:
    """post_migrate: every task of settings.PERIODIC_TASKS exists in the schedule."""
    for name, spec in settings.PERIODIC_TASKS.items():
        ensure_periodic_task(
            name=name,
            task=spec["task"],
            every_seconds=spec["every_seconds"],
            kwargs=spec.get("kwargs"),
            description=spec.get("description", ""),
            using=using,
        )
