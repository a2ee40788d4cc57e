"""The warehouse sync against the warehouse simulator over HTTP and real PostgreSQL."""

import contextlib
import threading

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core.management import call_command
from django.db import IntegrityError, connections
from django_celery_beat.models import PeriodicTask

from catalog.tests.factories import ProductFactory
from inventory.models import StockLevel, SyncStatus, WarehouseSyncRun
from inventory.services import stock_apply_warehouse_levels
from inventory.sync import warehouse_sync
from inventory.tests.factories import StockLevelFactory, product_in_warehouse
from inventory.types import SkuLevel
from inventory.warehouse import get_warehouse
from tests.interleave import Inject, raise_

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.WAREHOUSE_SYNC_PAGE_RETRIES = 2
    settings.WAREHOUSE_SYNC_RETRY_BASE_SECONDS = 0.01
    settings.WAREHOUSE_SYNC_PAGE_SIZE = 100
    get_warehouse.cache_clear()
    yield
    get_warehouse.cache_clear()


def level(product) -> tuple[int, int, int, int]:
    row = StockLevel.objects.get(product=product)
    return row.on_hand, row.version, row.reserved, row.committed


@pytest.mark.embedded
def test_sync_pulls_every_page_and_applies_newer_levels(warehouse_sim):
    # given: 250 SKUs we know at version 1, changed at the warehouse since
    products = [product_in_warehouse(warehouse_sim, 5) for _ in range(250)]
    warehouse_sim.set_stock({p.sku: 9 for p in products[:200]})  # version 2 for 200 of them

    # when
    run = warehouse_sync(trigger="test")

    # then: 3 pages of 100; 200 applied, 50 unchanged (same version)
    assert (run.status, run.pages, run.rows_seen) == ("succeeded", 3, 250)
    assert (run.applied, run.stale_skipped, run.unknown_skus, run.oversold) == (200, 50, 0, 0)
    assert level(products[0]) == (9, 2, 0, 0)
    assert level(products[-1]) == (5, 1, 0, 0)
    assert run.finished_at >= run.started_at


@pytest.mark.embedded
def test_unknown_skus_are_counted_and_missing_stock_rows_created(warehouse_sim):
    known_without_stock = ProductFactory()
    warehouse_sim.set_stock({known_without_stock.sku: 4, "NOT-IN-CATALOG": 7})

    run = warehouse_sync(trigger="test")

    assert (run.applied, run.unknown_skus) == (1, 1)
    assert run.details["unknown_skus"] == ["NOT-IN-CATALOG"]
    assert level(known_without_stock) == (4, 1, 0, 0)


def test_a_stale_snapshot_applied_after_the_shipment_answer_changes_nothing(
    warehouse_sim, customer, payment_sim
):
    from orders.tests.helpers import advance, place_order

    # given: 10 units on both sides; an order for 3 is confirmed (committed 3), its push to
    # the warehouse unanswered for now
    product = product_in_warehouse(warehouse_sim, 10)
    order = place_order(customer, (product.id, 3))
    warehouse_sim.configure(error_rate=1.0)
    assert not advance(order.id)[order.id].done
    warehouse_sim.configure(error_rate=0.0)
    assert level(product) == (10, 1, 0, 3)
    # a snapshot taken now, before the shipment
    stale_page = get_warehouse().stock_page(after=None, limit=100)

    # when: the shipment's answer arrives first, then the stale snapshot is applied
    advance(order.id)
    assert level(product) == (7, 2, 0, 0)
    result = stock_apply_warehouse_levels(levels=stale_page.levels)

    # then: the stale snapshot changed nothing
    assert (result.applied, result.stale_skipped) == (0, 1)
    assert level(product) == (7, 2, 0, 0)

    # and a newer snapshot applies
    warehouse_sim.set_stock({product.sku: 50})
    assert warehouse_sync(trigger="test").applied == 1
    assert level(product) == (50, 3, 0, 0)


def test_a_snapshot_below_what_is_held_is_recorded_as_oversold(warehouse_sim):
    # given: 6 units held by orders (4 reserved, 2 committed) of 10 on hand
    product = product_in_warehouse(warehouse_sim, 10)
    StockLevel.objects.filter(product=product).update(reserved=4, committed=2)

    # when: the warehouse reports shrinkage to 5
    warehouse_sim.set_stock({product.sku: 5})
    run = warehouse_sync(trigger="test")

    # then: applied (it is the truth) and recorded for operators
    assert run.oversold == 1
    assert run.details["oversold"] == [[product.sku, -1]]
    assert StockLevel.objects.get(product=product).available == -1


def test_a_batch_is_applied_whole_or_not_at_all():
    first, second = StockLevelFactory(on_hand=1, version=1), StockLevelFactory(on_hand=1, version=1)
    batch = [SkuLevel(first.product.sku, 5, 2), SkuLevel(second.product.sku, -1, 2)]

    with pytest.raises(IntegrityError):
        stock_apply_warehouse_levels(levels=batch)

    assert level(first.product)[:2] == (1, 1)  # the valid row was rolled back with the batch


def test_two_runs_started_at_once_one_applies_and_the_other_records_a_skip(warehouse_sim):
    # given: a warehouse slow enough that a run lasts a while
    products = [product_in_warehouse(warehouse_sim, 5) for _ in range(150)]
    warehouse_sim.set_stock({p.sku: 6 for p in products})
    warehouse_sim.configure(latency_ms=300)
    barrier = threading.Barrier(2)
    runs = []

    def start():
        barrier.wait()
        try:
            runs.append(warehouse_sync(trigger="test"))
        finally:
            connections.close_all()

    # when
    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then
    assert sorted(r.status for r in runs) == ["skipped", "succeeded"]
    skipped = next(r for r in runs if r.status == "skipped")
    assert "in progress" in skipped.error and skipped.applied == 0
    assert sum(r.applied for r in runs) == 150


def test_warehouse_down_fails_the_run_with_the_reason_and_the_next_run_succeeds(warehouse_sim):
    product = product_in_warehouse(warehouse_sim, 5)
    warehouse_sim.set_stock({product.sku: 8})
    warehouse_sim.configure(error_rate=1.0)

    failed = warehouse_sync(trigger="test")

    assert failed.status == "failed"
    assert "WarehouseUnavailable" in failed.error and "503" in failed.error
    assert level(product)[:2] == (5, 1)

    warehouse_sim.configure(error_rate=0.0)
    recovered = warehouse_sync(trigger="test")

    assert recovered.status == "succeeded" and recovered.applied == 1
    assert level(product)[:2] == (8, 2)


def test_a_run_left_running_by_a_dead_process_is_marked_abandoned(warehouse_sim):
    dead = WarehouseSyncRun.objects.create(trigger="beat")  # never finished, lease long gone

    warehouse_sync(trigger="test")

    dead.refresh_from_db()
    assert dead.status == SyncStatus.FAILED and "Abandoned" in dead.error


def test_sync_command_prints_a_summary(warehouse_sim, capsys):
    product = product_in_warehouse(warehouse_sim, 5)
    warehouse_sim.set_stock({product.sku: 2})

    call_command("sync_warehouse")

    out = capsys.readouterr().out
    assert "succeeded" in out and "1 rows seen, 1 applied" in out


def test_the_sync_schedule_exists_on_a_fresh_install(settings):
    task = PeriodicTask.objects.get(name="warehouse-sync")
    assert task.task == "inventory.sync_warehouse" and task.enabled
    assert (task.interval.every, task.interval.period) == (
        settings.WAREHOUSE_SYNC_INTERVAL_SECONDS,
        "seconds",
    )


# --- rows the warehouse gets wrong, and runs cut short -----------------------------------------


@pytest.mark.embedded
def test_bad_numbers_from_the_warehouse_are_skipped_and_reported_never_blocking_the_page(
    warehouse_sim,
):
    # given: one page where the warehouse serves a negative count, one past any integer
    # column, and a negative count for a product we have no stock row for yet
    good, negative, huge = (product_in_warehouse(warehouse_sim, 5) for _ in range(3))
    new = ProductFactory()
    warehouse_sim.set_stock({good.sku: 8, negative.sku: 8, huge.sku: 8, new.sku: 1})
    warehouse_sim.serve_overrides({negative.sku: -3, huge.sku: 2**40, new.sku: -1})

    # when
    run = warehouse_sync(trigger="test")

    # then: the good row applied, the bad ones skipped and named, nothing else changed
    assert run.status == "succeeded", run.error
    assert level(good) == (8, 2, 0, 0)
    assert (level(negative), level(huge)) == ((5, 1, 0, 0), (5, 1, 0, 0))
    assert not StockLevel.objects.filter(product=new).exists()
    assert (run.applied, run.rejected) == (1, 3)
    assert sorted(r["sku"] for r in run.details["rejected"]) == sorted(
        [negative.sku, huge.sku, new.sku]
    )


@pytest.mark.embedded
def test_a_row_that_is_not_a_number_is_skipped_and_the_rest_of_its_page_applied(warehouse_sim):
    good, garbled = product_in_warehouse(warehouse_sim, 5), product_in_warehouse(warehouse_sim, 5)
    warehouse_sim.set_stock({good.sku: 6, garbled.sku: 6})
    warehouse_sim.serve_overrides({garbled.sku: "lots"})

    run = warehouse_sync(trigger="test")

    assert run.status == "succeeded", run.error
    assert (level(good), level(garbled)) == ((6, 2, 0, 0), (5, 1, 0, 0))
    assert run.rejected == 1 and run.details["rejected"][0]["sku"] == garbled.sku


def test_runs_cut_by_their_time_limit_resume_where_the_last_one_stopped(warehouse_sim):
    # given: three pages of SKUs, every one newer at the warehouse
    products = [product_in_warehouse(warehouse_sim, 5) for _ in range(250)]
    warehouse_sim.set_stock({p.sku: 7 for p in products})

    # when: three runs, each stopped by its time limit right after its first page
    with Inject("sync.page", raise_(SoftTimeLimitExceeded()), times=3):
        for _ in range(3):
            with contextlib.suppress(SoftTimeLimitExceeded):  # a run may also stop by itself
                warehouse_sync(trigger="test")

    # then: together they reached every SKU
    assert StockLevel.objects.filter(product__in=products, version=2).count() == 250
