from celery import shared_task
from django.conf import settings

from inventory.sync import warehouse_sync

SYNC_WAREHOUSE = "inventory.sync_warehouse"


# Its own time limits, not the global ones: a run stops by itself after
# WAREHOUSE_SYNC_MAX_SECONDS (the next one resumes at its cursor); the soft limit is a
# backstop that still lets it record where it stopped, the hard one a last resort.
@shared_task(
    name=SYNC_WAREHOUSE,
    acks_late=False,
    soft_time_limit=settings.WAREHOUSE_SYNC_MAX_SECONDS + 60,
    time_limit=settings.WAREHOUSE_SYNC_MAX_SECONDS + 120,
)
def sync_warehouse(trigger: str = "beat") -> int:
    """Scheduled by celery-beat. Not acks_late: a sync that dies is not redelivered; the
    next scheduled run does the work (from its cursor), and the lease keeps runs from
    overlapping."""
    return warehouse_sync(trigger=trigger).pk
