"""Warehouse sync metrics for /metrics, computed at scrape time from the recorded runs."""

from collections.abc import Iterator

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from inventory.models import SyncStatus, WarehouseSyncRun


class WarehouseSyncCollector:
    def collect(self) -> Iterator[Metric]:
        finished_at = (
            WarehouseSyncRun.objects.filter(status=SyncStatus.SUCCEEDED)
            .order_by("-id")
            .values_list("finished_at", flat=True)
            .first()
        )
        if finished_at is None:
            return  # never synced: no sample, so an alert on absent() or on the age fires
        yield GaugeMetricFamily(
            "orderproj_warehouse_sync_last_success_timestamp_seconds",
            "When the last successful warehouse sync finished (Unix time).",
            value=finished_at.timestamp(),
        )
        yield GaugeMetricFamily(
            "orderproj_warehouse_sync_last_success_age_seconds",
            "Seconds since the last successful warehouse sync finished.",
            value=(timezone.now() - finished_at).total_seconds(),
        )
