import re
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from inventory.models import StockLevel, StockMovement, WarehouseSyncRun
from inventory.services import stock_reserve
from inventory.tests.factories import StockLevelFactory, partial_sync_run, product_with_stock
from tests.live import queue_length

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    return client


def test_sync_runs_screen_shows_runs_and_flags_oversold(admin_client):
    WarehouseSyncRun.objects.create(
        trigger="beat",
        status="succeeded",
        applied=3,
        oversold=2,
        details={"oversold": [["A", -1], ["B", -2]]},
    )
    WarehouseSyncRun.objects.create(trigger="beat", status="failed", error="WarehouseUnavailable")

    page = admin_client.get("/admin/inventory/warehousesyncrun/").content.decode()

    assert "Sync now" in page
    assert "2 SKU(s) below what is held" in page
    assert "WarehouseUnavailable" in page


def test_sync_now_queues_a_sync(admin_client):
    before = queue_length()

    response = admin_client.post("/admin/inventory/warehousesyncrun/sync-now/", follow=True)

    assert response.status_code == 200
    assert "Sync queued" in response.content.decode()
    assert queue_length() == before + 1


def test_sync_now_refuses_get(admin_client):
    assert admin_client.get("/admin/inventory/warehousesyncrun/sync-now/").status_code == 405


def test_beat_schedule_is_editable_in_the_admin(admin_client):
    page = admin_client.get("/admin/django_celery_beat/periodictask/").content.decode()
    assert "warehouse-sync" in page


# --- Stock levels: operators look, the warehouse and orders write ----------------------------


def test_a_stock_level_page_has_no_save_button(admin_client):
    level = StockLevelFactory(on_hand=7)

    page = admin_client.get(f"/admin/inventory/stocklevel/{level.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "View stock level" in html
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert re.search(r'field-on_hand">.*?<div class="readonly">7</div>', html, re.S)


def test_posting_a_stock_level_is_refused_and_writes_nothing(admin_client):
    level = StockLevelFactory(on_hand=7)
    before = StockLevel.objects.filter(pk=level.pk).values().get()

    response = admin_client.post(
        f"/admin/inventory/stocklevel/{level.pk}/change/",
        {"on_hand": 500, "reserved": 0, "committed": 0, "version": 99, "_save": "Save"},
    )

    assert response.status_code == 403
    assert StockLevel.objects.filter(pk=level.pk).values().get() == before


def test_the_stock_levels_list_offers_no_action_that_writes(admin_client):
    StockLevelFactory()

    page = admin_client.get("/admin/inventory/stocklevel/").content.decode()

    assert 'name="action"' not in page  # no bulk action (delete_selected needs delete rights)
    assert "/admin/inventory/stocklevel/add/" not in page
    assert "Select stock level to view" in page


# --- Warehouse sync runs: what an operator acts on in sight at 1366 px ------------------------


def sync_runs_columns(page: str) -> list[str]:
    head = cast(re.Match[str], re.search(r"<thead>.*?</thead>", page, re.S)).group(0)
    return re.findall(r'<th scope="col"\s+class="[^"]*column-(\w+)', head)


def test_sync_runs_list_groups_its_figures_so_oversold_and_error_stay_in_view(admin_client):
    partial_sync_run()

    page = admin_client.get("/admin/inventory/warehousesyncrun/").content.decode()

    # Beside both sidebars a 1366 px screen fits eight short columns (the browser test
    # measures it): every figure is still on the list, grouped.
    assert sync_runs_columns(page) == [
        "id",
        "started",
        "status_and_trigger",
        "rows",
        "skipped",
        "oversold_flag",
        "short_error",
    ]
    assert "11750 / 11873" in page and "12 pages" in page
    assert "98 stale<br>17 unknown<br>8 rejected" in page
    assert '<span class="ops-alert">3 SKU(s) below what is held</span>' in page
    assert "by beat" in page
    # a long error is cut in the list, and whole on hover
    assert 'title="WarehouseUnavailable: GET /stock?page=3 answered 503 Service Unavailable' in page


def test_sync_runs_list_shows_start_times_with_seconds(admin_client):
    started = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)
    run = WarehouseSyncRun.objects.create(trigger="beat", status="succeeded")
    WarehouseSyncRun.objects.filter(pk=run.pk).update(
        started_at=started, finished_at=started + timedelta(seconds=2.5)
    )

    page = admin_client.get("/admin/inventory/warehousesyncrun/").content.decode()
    detail = admin_client.get(f"/admin/inventory/warehousesyncrun/{run.pk}/change/")

    assert re.search(r"2026-03-14</span> <span[^>]*>09:26:53</span>", page)
    assert "took 2.50s" in page
    assert "2026-03-14 09:26:55" in detail.content.decode()  # finished_at, on the run's page


def test_a_products_ledger_is_one_click_from_its_stock_level_and_filters_by_reason(
    admin_client, staff_user
):
    # given: a product reserved for order 41, and another product's opening balance
    product = product_with_stock(10, sku="LEDGER-1")
    product_with_stock(3, sku="OTHER-1")
    with transaction.atomic():
        stock_reserve(orders={41: {product.pk: 4}}, actor_id=staff_user.pk)

    # when: an operator follows the link on its stock level
    level_page = admin_client.get(f"/admin/inventory/stocklevel/{product.pk}/change/")
    link = f"/admin/inventory/stockmovement/?product__id__exact={product.pk}"
    assert link in level_page.content.decode()
    ledger = admin_client.get(link).content.decode()

    # then: its two movements, the newest first, with the change, the levels and the cause
    assert ledger.count('class="field-id"') == 2
    assert ledger.index("Reserved for an order") < ledger.index("Opening balance")
    assert "reserved +4" in ledger and "6 available" in ledger
    assert 'href="/admin/orders/order/41/change/">order 41</a>' in ledger
    assert "OTHER-1" not in ledger
    # filtered by reason, and found by the order's id or the SKU
    only_reserve = admin_client.get(link + "&reason__exact=reserve").content.decode()
    assert only_reserve.count('class="field-id"') == 1
    assert (
        admin_client.get("/admin/inventory/stockmovement/?q=41")
        .content.decode()
        .count('class="field-id"')
        == 1
    )
    by_sku = admin_client.get("/admin/inventory/stockmovement/?q=LEDGER-1").content.decode()
    assert by_sku.count('class="field-id"') == 2
    # a movement's page reads, and cannot be changed
    movement = StockMovement.objects.get(reason="reserve")
    page = admin_client.get(f"/admin/inventory/stockmovement/{movement.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert staff_user.username in page.content.decode()
