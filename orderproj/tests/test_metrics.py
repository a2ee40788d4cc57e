"""/metrics without a worker: queue depth, the warehouse sync's age, access."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import WarehouseSyncRun
from orderproj.celery import app
from orderproj.tests.helpers import scrape

pytestmark = pytest.mark.django_db

QUEUE = ("orderproj_celery_queue_length", (("queue", "orders"),))


@pytest.fixture
def empty_queue():
    app.control.purge()
    yield
    app.control.purge()


def test_queue_length_counts_messages_waiting_in_the_broker(client, empty_queue):
    assert scrape(client)[QUEUE] == 0

    for order_id in (1, 2, 3):  # no worker runs in this module: they wait
        app.send_task("orders.process_order", args=[order_id])
    app.send_task("orders.reconcile")

    metrics = scrape(client)
    assert metrics[QUEUE] == 3  # each kind of work in its own queue
    assert metrics[("orderproj_celery_queue_length", (("queue", "maintenance"),))] == 1
    assert metrics[("orderproj_celery_queue_length", (("queue", "sync"),))] == 0


def test_time_since_the_last_successful_sync(client):
    assert ("orderproj_warehouse_sync_last_success_age_seconds", ()) not in scrape(client)
    finished = timezone.now() - timedelta(seconds=120)
    WarehouseSyncRun.objects.create(trigger="beat", status="succeeded", finished_at=finished)
    WarehouseSyncRun.objects.create(trigger="beat", status="failed", finished_at=timezone.now())

    metrics = scrape(client)

    assert 120 <= metrics[("orderproj_warehouse_sync_last_success_age_seconds", ())] < 130
    assert metrics[("orderproj_warehouse_sync_last_success_timestamp_seconds", ())] == (
        pytest.approx(finished.timestamp())
    )


def test_metrics_require_the_bearer_token_when_one_is_set(client, settings):
    settings.METRICS_BEARER_TOKEN = "s3cret"

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert scrape(client, HTTP_AUTHORIZATION="Bearer s3cret")


def test_database_metrics_are_still_served_while_the_broker_is_unreachable(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    metrics = scrape(client)

    assert metrics[("orderproj_orders_created_total", ())] == 0
    assert QUEUE not in metrics
