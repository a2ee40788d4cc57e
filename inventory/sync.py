"""The warehouse stock sync: pull every page of the warehouse's snapshot and apply it by
compare-and-set, one transaction per page. Single flight through a database lease: a second
run started meanwhile (two beats, beat plus an operator) records that it skipped."""

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.utils import timezone

from core.checkpoints import checkpoint
from core.leases import lease_acquire, lease_holder, lease_release, lease_renew
from inventory.models import SyncStatus, WarehouseSyncRun
from inventory.services import stock_apply_warehouse_levels
from inventory.warehouse import StockPage, WarehouseRejected, WarehouseUnavailable, get_warehouse

logger = logging.getLogger(__name__)

LEASE = "warehouse-sync"
SAMPLE = 50  # how many unknown / oversold SKUs a run keeps for operators


class LeaseLost(Exception):
    pass


def _fetch(after: str | None) -> StockPage:
    """One page, retried with exponential backoff while the warehouse gives no answer."""
    retries = settings.WAREHOUSE_SYNC_PAGE_RETRIES
    for attempt in range(retries + 1):
        try:
            return get_warehouse().stock_page(after=after, limit=settings.WAREHOUSE_SYNC_PAGE_SIZE)
        except WarehouseUnavailable as exc:
            if attempt == retries:
                raise
            delay = settings.WAREHOUSE_SYNC_RETRY_BASE_SECONDS * 2**attempt
            logger.warning(
                "warehouse stock page after %r failed (%s); retry in %.1fs", after, exc, delay
            )
            time.sleep(delay)  # backoff inside one run: the lease is held meanwhile
    raise AssertionError("unreachable")


def warehouse_sync(
    *, trigger: str, on_page: Callable[[WarehouseSyncRun], None] | None = None
) -> WarehouseSyncRun:
    """Run one sync and return its record: succeeded, failed (with the reason) or skipped.

    Each page is applied in its own transaction, so a failure never leaves a page half
    applied; pages applied before it stay applied (each is correct on its own, being
    compare-and-set). Safe to run at any time, any number of times.
    """
    run = WarehouseSyncRun.objects.create(trigger=trigger)
    holder = f"run-{run.pk}"
    lease_seconds = settings.WAREHOUSE_SYNC_LEASE_SECONDS
    if not lease_acquire(name=LEASE, holder=holder, seconds=lease_seconds):
        run.status = SyncStatus.SKIPPED
        run.error = f"Another sync run is in progress ({lease_holder(name=LEASE)})."
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])
        logger.info("warehouse sync %s skipped: %s", run.pk, run.error)
        return run

    # Its time starts when it holds the lease: runs never overlap, and their records show it.
    run.started_at = timezone.now()
    run.save(update_fields=["started_at"])
    # We hold the lease, so any other run still marked running died without finishing.
    WarehouseSyncRun.objects.filter(status=SyncStatus.RUNNING).exclude(pk=run.pk).update(
        status=SyncStatus.FAILED,
        finished_at=timezone.now(),
        error="Abandoned: the process running it stopped before finishing.",
    )
    unknown: list[str] = []
    oversold: list[list] = []
    try:
        after = None
        while True:
            page = _fetch(after)
            batch = stock_apply_warehouse_levels(levels=page.levels)
            run.pages += 1
            run.rows_seen += len(page.levels)
            run.applied += batch.applied + batch.created
            run.stale_skipped += batch.stale_skipped
            run.unknown_skus += len(batch.unknown_skus)
            run.oversold += len(batch.oversold)
            unknown.extend(batch.unknown_skus[: SAMPLE - len(unknown)])
            oversold.extend([list(o) for o in batch.oversold[: SAMPLE - len(oversold)]])
            run.details = {"unknown_skus": unknown, "oversold": oversold}
            run.save(
                update_fields=[
                    "pages",
                    "rows_seen",
                    "applied",
                    "stale_skipped",
                    "unknown_skus",
                    "oversold",
                    "details",
                ]
            )
            if on_page:
                on_page(run)
            checkpoint("sync.page", run_id=run.pk, page=run.pages)
            if not page.next_after or not page.levels:
                break
            if not lease_renew(name=LEASE, holder=holder, seconds=lease_seconds):
                raise LeaseLost("The sync lease expired and was taken by another run.")
            after = page.next_after
        run.status = SyncStatus.SUCCEEDED
    except Exception as exc:
        run.status = SyncStatus.FAILED
        run.error = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, WarehouseUnavailable | WarehouseRejected | LeaseLost):
            raise  # a bug, not an outage: recorded, and raised for the task's own handling
    finally:
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])
        lease_release(name=LEASE, holder=holder)
        log = logger.warning if run.status == SyncStatus.FAILED else logger.info
        log(
            "warehouse sync %s %s: %s pages, %s rows, %s applied, %s stale, %s unknown, "
            "%s oversold%s",
            run.pk,
            run.status,
            run.pages,
            run.rows_seen,
            run.applied,
            run.stale_skipped,
            run.unknown_skus,
            run.oversold,
            f" ({run.error})" if run.error else "",
        )
    return run
