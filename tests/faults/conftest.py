import time

import pytest

from core.publisher import publisher
from inventory.tests.factories import product_in_warehouse
from tests.faults.harness import PrivateRedis, Stack, set_schedule


@pytest.fixture
def private_redis(tmp_path):
    broker = PrivateRedis(tmp_path)
    yield broker
    broker.stop()


@pytest.fixture
def fault_stack(
    worker_env, private_redis, tmp_path, settings, monkeypatch, payment_sim, warehouse_sim
):
    """Workers and beats (started by the test) on a private Redis, with the reconciler every
    second and a 6 s stuck threshold, so recovery happens within a test's time."""
    settings.CELERY_BROKER_URL = private_redis.url
    # Celery prefers the environment variable to its configuration for the broker URL.
    monkeypatch.setenv("CELERY_BROKER_URL", private_redis.url)
    publisher.cache_clear()
    set_schedule("reconcile-orders", every=1)
    set_schedule("warehouse-sync", enabled=False)
    set_schedule("purge-idempotency-keys", enabled=False)
    stack = Stack(
        worker_env,
        private_redis,
        tmp_path,
        ORDER_STUCK_AFTER_SECONDS=6,
        RECONCILE_INTERVAL_SECONDS=1,
        ORDER_RESERVATION_TTL_SECONDS=300,
        WAREHOUSE_SYNC_PAGE_SIZE=50,
    )
    yield stack
    stack.stop()
    publisher.cache_clear()


@pytest.fixture
def stocked_products(warehouse_sim):
    def make(count: int, on_hand: int) -> list:
        return [product_in_warehouse(warehouse_sim, on_hand) for _ in range(count)]

    return make


def post_orders(client, products, count: int, *, rng=None) -> tuple[list[int], list[float]]:
    """POST count orders through the API; returns their ids and each answer's seconds."""
    ids, seconds = [], []
    for i in range(count):
        product = rng.choice(products) if rng else products[i % len(products)]
        started = time.monotonic()
        response = client.post(
            "/api/orders/",
            {"items": [{"product_id": product.id, "quantity": 1 + (i % 2)}]},
            format="json",
        )
        seconds.append(time.monotonic() - started)
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])
    return ids, seconds
