"""Throttling of order creation: per user, rate from ORDER_CREATE_THROTTLE_RATE at request
time, counted in the shared cache (Redis here), answered 429 in the error shape."""

import pytest
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

from inventory.tests.factories import product_with_stock
from orders.throttling import OrderCreateThrottle

pytestmark = pytest.mark.django_db

ORDERS = "/api/orders/"


def create(client, product):
    return client.post(
        ORDERS, {"items": [{"product_id": product.id, "quantity": 1}]}, format="json"
    )


def test_the_third_order_in_a_minute_is_429_for_that_user_only(
    order_throttle, customer, customer_client, other_client
):
    # given
    order_throttle("2/min")
    product = product_with_stock(50)

    # when
    answers = [create(customer_client, product).status_code for _ in range(3)]
    refused = create(customer_client, product)

    # then: refused in the error shape, saying when to come back
    assert answers == [202, 202, 429]
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "throttled"
    assert 0 < error["details"]["retry_after_seconds"] <= 60
    assert 0 < int(refused["Retry-After"]) <= 60
    # another customer, and reading, are not affected
    assert create(other_client, product).status_code == 202
    assert customer_client.get(ORDERS).status_code == 200
    # the counter is in the cache every web process shares
    assert isinstance(caches["default"], RedisCache)
    throttle = OrderCreateThrottle()
    key = throttle.cache_format % {"scope": throttle.scope, "ident": customer.pk}
    assert len(cache.get(key)) == 2


def test_the_legacy_path_counts_against_the_same_limit(order_throttle, customer_client):
    order_throttle("1/min")
    product = product_with_stock(50)

    first = create(customer_client, product)
    second = customer_client.post(
        "/orders/create", {"items": [{"product_id": product.id, "quantity": 1}]}, format="json"
    )

    assert (first.status_code, second.status_code) == (202, 429)


def test_an_empty_rate_turns_the_throttle_off(order_throttle, customer_client):
    order_throttle("")
    product = product_with_stock(50)

    assert {create(customer_client, product).status_code for _ in range(6)} == {202}


def test_the_cache_is_redis_when_the_broker_is(settings):
    # the test suite runs on the production stack: throttle counts are shared by processes
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert settings.CACHES["default"]["LOCATION"] == settings.CELERY_BROKER_URL
    cache.set("orderproj-test-probe", 1, timeout=5)
    assert cache.get("orderproj-test-probe") == 1
    cache.delete("orderproj-test-probe")


def test_without_its_cache_the_throttle_lets_orders_through(customer_client, settings):
    # given: a limit of one a minute, and a cache server nobody answers at
    settings.ORDER_CREATE_THROTTLE_RATE = "1/min"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    product = product_with_stock(50)

    # when
    answers = [create(customer_client, product).status_code for _ in range(3)]

    # then: taking orders matters more than limiting them
    assert answers == [202, 202, 202]
