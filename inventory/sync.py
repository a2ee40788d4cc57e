"""The warehouse stock sync: pull every page of the warehouse's snapshot and apply it by
compare-and-set, one transaction per page. Single flight through a database lease: a second
run started meanwhile (two beats, beat plus an operator) records that it skipped.

A run has its own time limit (WAREHOUSE_SYNC_MAX_SECONDS, checked after every page, and the
task's soft time limit as a backstop). A run that stops before the end of the snapshot (its
time is up, or the warehouse failed) keeps a cursor, and the next run resumes there, so the
tail of a catalog larger than one run can cover is reached too. A row the warehouse got
wrong is skipped and reported; it never blocks its page.
"""

import logging
import time
from collections.abc import Callable

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

from core.checkpoints import checkpoint
from core.leases import lease_acquire, lease_holder, lease_release, lease_renew
from inventory.models import SyncStatus, WarehouseSyncRun
from inventory.services import stock_apply_warehouse_levels
from inventory.types import StockPage, WarehouseRejected, WarehouseUnavailable
from inventory.warehouse import get_warehouse

logger = logging.getLogger(__name__)

LEASE = "warehouse-sync"
SAMPLE = 50  # how many unknown / oversold / rejected SKUs a run keeps for operators


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


def _resume_after() -> str:
    """Where the last run that got anywhere stopped, if it stopped before the end."""
    last = (
        WarehouseSyncRun.objects.exclude(status__in=[SyncStatus.SKIPPED, SyncStatus.RUNNING])
        .order_by("-id")
        .values_list("status", "cursor")
        .first()
    )
    if last is None or last[0] == SyncStatus.SUCCEEDED:
        return ""
    return last[1]


def warehouse_sync(
    *, trigger: str, on_page: Callable[[WarehouseSyncRun], None] | None = None
) -> WarehouseSyncRun:
    """Run one sync and return its record: succeeded (the end of the snapshot reached),
    partial (its time ran out; the next run resumes at its cursor), failed (with the reason;
    likewise resumed) or skipped.

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
    # We hold the lease, so any other run still marked running died without finishing.
    WarehouseSyncRun.objects.filter(status=SyncStatus.RUNNING).exclude(pk=run.pk).update(
        status=SyncStatus.FAILED,
        finished_at=timezone.now(),
        error="Abandoned: the process running it stopped before finishing.",
    )
    run.started_after = run.cursor = _resume_after()
    run.save(update_fields=["started_at", "started_after", "cursor"])
    deadline = time.monotonic() + settings.WAREHOUSE_SYNC_MAX_SECONDS
    samples: dict[str, list] = {"unknown_skus": [], "oversold": [], "rejected": []}
    try:
        after = run.cursor or None
        while True:
            page = _fetch(after)
            batch = stock_apply_warehouse_levels(levels=page.levels, sync_run_id=run.pk)
            _count_page(run, page, batch, samples)
            if on_page:
                on_page(run)
            checkpoint("sync.page", run_id=run.pk, page=run.pages)
            if not page.next_after or not (page.levels or page.rejected):
                run.cursor = ""
                run.status = SyncStatus.SUCCEEDED
                break
            if time.monotonic() > deadline:
                run.status = SyncStatus.PARTIAL
                run.error = (
                    f"Stopped at its time limit ({settings.WAREHOUSE_SYNC_MAX_SECONDS}s) after "
                    f"{run.pages} pages; the next run resumes after {run.cursor}."
                )
                break
            if not lease_renew(name=LEASE, holder=holder, seconds=lease_seconds):
                raise LeaseLost("The sync lease expired and was taken by another run.")
            after = page.next_after
    except SoftTimeLimitExceeded:
        run.status = SyncStatus.PARTIAL
        run.error = f"Stopped by the task's time limit; the next run resumes after {run.cursor}."
    except Exception as exc:
        run.status = SyncStatus.FAILED
        run.error = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, WarehouseUnavailable | WarehouseRejected | LeaseLost):
            raise  # a bug, not an outage: recorded, and raised for the task's own handling
    finally:
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "error", "finished_at", "cursor"])
        lease_release(name=LEASE, holder=holder)
        _log_run(run)
    return run


def _count_page(run: WarehouseSyncRun, page: StockPage, batch, samples: dict[str, list]) -> None:
    """Add a page applied to the run's record, and move its cursor past it."""
    run.pages += 1
    run.rows_seen += len(page.levels) + len(page.rejected)
    run.applied += batch.applied + batch.created
    run.stale_skipped += batch.stale_skipped
    run.unknown_skus += len(batch.unknown_skus)
    run.oversold += len(batch.oversold)
    run.rejected += len(page.rejected)
    for name, found in (
        ("unknown_skus", batch.unknown_skus),
        ("oversold", [list(o) for o in batch.oversold]),
        ("rejected", [{"sku": r.sku, "reason": r.reason} for r in page.rejected]),
    ):
        samples[name].extend(found[: SAMPLE - len(samples[name])])
    for row in page.rejected:
        logger.warning("warehouse sync %s: row %s skipped: %s", run.pk, row.sku, row.reason)
    run.details = samples
    run.cursor = page.next_after or ""  # past the last page: the next run starts over
    run.save(
        update_fields=[
            "pages",
            "rows_seen",
            "applied",
            "stale_skipped",
            "unknown_skus",
            "oversold",
            "rejected",
            "details",
            "cursor",
        ]
    )


def _log_run(run: WarehouseSyncRun) -> None:
    log = logger.warning if run.status in (SyncStatus.FAILED, SyncStatus.PARTIAL) else logger.info
    log(
        "warehouse sync %s %s: %s pages, %s rows, %s applied, %s stale, %s unknown, "
        "%s oversold, %s rejected%s",
        run.pk,
        run.status,
        run.pages,
        run.rows_seen,
        run.applied,
        run.stale_skipped,
        run.unknown_skus,
        run.oversold,
        run.rejected,
        f" ({run.error})" if run.error else "",
    )
