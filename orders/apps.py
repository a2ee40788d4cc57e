from django.apps import AppConfig
from django.db.models.signals import post_migrate

IDEMPOTENCY_PURGE_SCHEDULE = "purge-idempotency-keys"


def ensure_idempotency_purge_schedule(sender, using: str = "default", **kwargs) -> None:
    """On every migrate: the hourly purge of expired Idempotency-Keys exists in
    django-celery-beat's schedule (created once; an operator's edits are kept)."""
    from orderproj.schedules import ensure_periodic_task
    from orders.dispatch import PURGE_IDEMPOTENCY_KEYS

    ensure_periodic_task(
        name=IDEMPOTENCY_PURGE_SCHEDULE,
        task=PURGE_IDEMPOTENCY_KEYS,
        every_seconds=3600,
        description="Delete Idempotency-Keys older than IDEMPOTENCY_KEY_TTL_HOURS.",
        using=using,
    )


RECONCILE_SCHEDULE = "reconcile-orders"


def ensure_reconcile_schedule(sender, using: str = "default", **kwargs) -> None:
    """On every migrate: the reconciler's schedule exists (created once; edits are kept)."""
    from django.conf import settings

    from orderproj.schedules import ensure_periodic_task
    from orders.dispatch import RECONCILE

    ensure_periodic_task(
        name=RECONCILE_SCHEDULE,
        task=RECONCILE,
        every_seconds=settings.RECONCILE_INTERVAL_SECONDS,
        description="Re-publish stuck orders, settle payments in doubt, expire reservations, "
        "refund late captures.",
        using=using,
    )


class OrdersConfig(AppConfig):
    name = "orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(
            ensure_idempotency_purge_schedule,
            sender=self,
            dispatch_uid="orders.ensure_idempotency_purge_schedule",
        )
        post_migrate.connect(
            ensure_reconcile_schedule, sender=self, dispatch_uid="orders.ensure_reconcile_schedule"
        )
