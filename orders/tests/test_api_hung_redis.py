"""A hung Redis (every command accepted and none answered, as a wedged server or a network
partition looks) never holds an order's creation longer than the publish bound: the order is
saved and answered, and a worker takes it up once Redis answers again."""

import time

import pytest

from core.publisher import publisher
from inventory.tests.factories import product_with_stock
from orders.models import Order
from tests.faults.harness import PrivateRedis

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hung_redis(tmp_path, settings, monkeypatch):
    """The broker and the cache on a Redis of the test's own, configured as settings.py
    configures a Redis broker's, which the test may pause."""
    redis = PrivateRedis(tmp_path)
    cache = dict(settings.CACHES["default"])
    assert cache["BACKEND"].endswith("RedisCache"), "the test suite runs on Redis"
    settings.CACHES = {"default": {**cache, "LOCATION": redis.url}}
    settings.CELERY_BROKER_URL = redis.url
    monkeypatch.setenv("CELERY_BROKER_URL", redis.url)
    settings.ORDER_WAKE_DEBOUNCE_SECONDS = 2  # as in production: the debounce asks Redis
    publisher.cache_clear()
    yield redis
    redis.stop()
    publisher.cache_clear()


def test_an_order_is_answered_within_the_publish_bound_while_redis_hangs(
    hung_redis, customer_client, settings
):
    # given: Redis hung for the next five seconds
    product = product_with_stock(5)
    hung_redis.pause(5, mode="ALL")

    # when: an order is posted
    started = time.monotonic()
    response = customer_client.post(
        "/api/orders/", {"items": [{"product_id": product.id, "quantity": 1}]}, format="json"
    )
    seconds = time.monotonic() - started

    # then: it was saved and answered within the bound of a publish
    assert response.status_code == 202, response.content
    assert Order.objects.filter(pk=response.json()["id"]).exists()
    assert seconds < settings.CELERY_PUBLISH_TIMEOUT + 0.5, seconds
