from django.apps import AppConfig
from django.db.models.signals import post_migrate

WAREHOUSE_SYNC_SCHEDULE = "warehouse-sync"


def ensure_sync_schedule(sender, using: str = "default", **kwargs) -> None:
    from django.conf import settings

    from inventory.tasks import SYNC_WAREHOUSE
    from orderproj.schedules import ensure_periodic_task

    ensure_periodic_task(
        name=WAREHOUSE_SYNC_SCHEDULE,
        task=SYNC_WAREHOUSE,
        every_seconds=settings.WAREHOUSE_SYNC_INTERVAL_SECONDS,
        kwargs={"trigger": "beat"},
        description="Pull the warehouse's stock snapshot (on_hand/version, compare-and-set).",
        using=using,
    )


class InventoryConfig(AppConfig):
    name = "inventory"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(
            ensure_sync_schedule, sender=self, dispatch_uid="inventory.ensure_sync_schedule"
        )
