from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    """The ground floor every app may import (errors, the HTTP client base, leases, the
    publisher, admin and API plumbing); it imports no app."""

    name = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core import checks  # noqa: F401  (registers the system checks)
        from core.schedules import ensure_periodic_tasks

        post_migrate.connect(
            ensure_periodic_tasks, sender=self, dispatch_uid="core.ensure_periodic_tasks"
        )
