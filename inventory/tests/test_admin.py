import pytest
from django.contrib.auth import get_user_model

from inventory.models import WarehouseSyncRun
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
