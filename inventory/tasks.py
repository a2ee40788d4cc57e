from celery import shared_task

from inventory.sync import warehouse_sync

SYNC_WAREHOUSE = "inventory.sync_warehouse"


@shared_task(name=SYNC_WAREHOUSE, acks_late=False)
def sync_warehouse(trigger: str = "beat") -> int:
    """Scheduled by celery-beat. Not acks_late: a sync that dies is not redelivered; the
    next scheduled run does the work, and the lease keeps runs from overlapping."""
    return warehouse_sync(trigger=trigger).pk
