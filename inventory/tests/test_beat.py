"""celery-beat really schedules the sync: a beat and a worker, both real processes."""

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from inventory.models import WarehouseSyncRun
from inventory.tests.factories import product_in_warehouse
from tests.live import BeatProcess
from tests.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def test_beat_and_a_worker_produce_recorded_sync_runs(worker_env, warehouse_sim, tmp_path):
    # given: the schedule created on install, edited to every second (as in the admin)
    product = product_in_warehouse(warehouse_sim, 5)
    warehouse_sim.set_stock({product.sku: 11})
    task = PeriodicTask.objects.get(name="warehouse-sync")
    task.interval, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    task.save()

    # when
    beat = BeatProcess(worker_env, log_path=tmp_path / "beat.log")
    try:
        runs = wait_for(
            lambda: (
                list(WarehouseSyncRun.objects.filter(trigger="beat", status="succeeded"))
                if WarehouseSyncRun.objects.filter(trigger="beat", status="succeeded").count() >= 2
                else None
            ),
            timeout=45,
            interval=0.5,
            message="two scheduled sync runs",
        )
    finally:
        beat.stop()

    # then: the first applied the warehouse's newer level, later ones found nothing newer
    assert sum(run.applied for run in runs) == 1
    product.stock.refresh_from_db()
    assert product.stock.on_hand == 11
    assert "DatabaseScheduler" in (tmp_path / "beat.log").read_text()
