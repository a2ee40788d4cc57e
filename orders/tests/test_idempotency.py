"""Idempotency-Key on order creation: replay, conflicts, concurrency, expiry and purge."""

import json
import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core.schedules import ensure_periodic_tasks
from inventory.tests.factories import product_with_stock
from orderproj.celery import app as celery_app
from orders.dispatch import PURGE_IDEMPOTENCY_KEYS
from orders.idempotency import idempotency_key_purge
from orders.models import IdempotencyKey, Order
from orders.tasks import purge_idempotency_keys
from orders.tests.conftest import Background, TableLock
from tests.processes import wait_for

ORDERS = "/api/orders/"


def client_of(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def post(client, body, *, key: str | None = None, path: str = ORDERS):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    raw = body if isinstance(body, str) else json.dumps(body)
    return client.generic("POST", path, raw, content_type="application/json", **headers)


def items(product, quantity: int = 1) -> dict:
    return {"items": [{"product_id": product.id, "quantity": quantity}]}


@pytest.mark.django_db
def test_same_key_and_body_replays_the_first_answer_exactly(customer, customer_client):
    # given: an order accepted with a key, then cancelled, so the order itself has changed
    product = product_with_stock(5)
    first = post(customer_client, items(product, 2), key="order-7f3a")
    assert first.status_code == 202, first.content
    Order.objects.filter(pk=first.json()["id"]).update(status="cancelled")

    # when: the client retries (say its connection dropped), and again on the spec's path
    again = post(customer_client, items(product, 2), key="order-7f3a")
    legacy = post(customer_client, items(product, 2), key="order-7f3a", path="/orders/create")

    # then: the first answer, byte for byte, and still one order
    for replay in (again, legacy):
        assert replay.status_code == 202
        assert replay.content == first.content
        assert replay["Location"] == first["Location"]
        assert replay["Content-Type"] == "application/json"
        assert replay["Idempotent-Replayed"] == "true"
    assert replay.json()["status"] == "pending"  # as answered then, not as it is now
    assert Order.objects.count() == 1
    assert not first.has_header("Idempotent-Replayed")


@pytest.mark.django_db
def test_formatting_and_key_order_of_the_body_do_not_make_another_request(customer_client):
    product = product_with_stock(5)
    compact = f'{{"items":[{{"product_id":{product.id},"quantity":1}}]}}'
    spaced = f'{{ "items": [ {{ "quantity": 1,  "product_id": {product.id} }} ] }}'

    first = post(customer_client, compact, key="k-1")
    second = post(customer_client, spaced, key="k-1")

    assert (first.status_code, second.status_code) == (202, 202)
    assert second.content == first.content
    assert Order.objects.count() == 1


@pytest.mark.django_db
def test_same_key_with_another_body_is_422_and_creates_nothing(customer_client):
    product = product_with_stock(5)
    assert post(customer_client, items(product, 1), key="k-2").status_code == 202

    response = post(customer_client, items(product, 3), key="k-2")

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert error["details"] == {"idempotency_key": "k-2"}
    assert Order.objects.count() == 1


@pytest.mark.django_db
def test_keys_belong_to_their_user(customer_client, other_client):
    product = product_with_stock(5)

    mine = post(customer_client, items(product), key="shared-key")
    theirs = post(other_client, items(product), key="shared-key")

    assert (mine.status_code, theirs.status_code) == (202, 202)
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.json()["customer"] == "bob"


@pytest.mark.django_db
def test_a_refused_request_does_not_keep_its_key(customer_client):
    # given: a first attempt with a mistake in it
    product = product_with_stock(5)
    refused = post(
        customer_client, {"items": [{"product_id": product.id, "quantity": 0}]}, key="k-3"
    )
    assert refused.status_code == 400
    assert not IdempotencyKey.objects.exists()

    # when: the corrected request is sent with the same key
    accepted = post(customer_client, items(product), key="k-3")

    # then: it runs (nothing had been done), and is kept from now on
    assert accepted.status_code == 202
    assert IdempotencyKey.objects.get().state == "completed"


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "a" * 256, "has space", "naïve"])
def test_an_unusable_key_is_400_naming_the_header(customer_client, key):
    response = post(customer_client, items(product_with_stock(5)), key=key)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "Idempotency-Key" in response.json()["error"]["details"]
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_a_key_past_its_lifetime_is_free_again(customer_client, settings):
    product = product_with_stock(5)
    first = post(customer_client, items(product), key="k-4")
    IdempotencyKey.objects.update(
        created_at=timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS, seconds=1)
    )

    second = post(customer_client, items(product, 2), key="k-4")

    assert second.status_code == 202
    assert second.json()["id"] != first.json()["id"]
    assert IdempotencyKey.objects.get().order_id == second.json()["id"]


@pytest.mark.django_db
def test_an_abandoned_claim_is_retaken(customer, customer_client, settings):
    # given: a claim left in flight by a request that crashed long ago (it created nothing)
    product = product_with_stock(5)
    body = items(product)
    assert post(customer_client, body, key="k-5").status_code == 202
    IdempotencyKey.objects.update(
        state="in_flight",
        response_status=None,
        response_body="",
        order=None,
        claimed_at=timezone.now()
        - timedelta(seconds=settings.IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS + 1),
    )
    Order.objects.all().delete()

    # when
    response = post(customer_client, body, key="k-5")

    # then
    assert response.status_code == 202
    assert Order.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_retry_while_the_first_is_in_flight_is_409_then_replays(customer, payment_sim):
    # given: the first request stopped inside its work (at the INSERT of its payment)
    product = product_with_stock(5)
    body = items(product)
    with TableLock("payments_payment") as lock:
        first = Background(lambda: post(client_of(customer), body, key="k-6"))
        wait_for(IdempotencyKey.objects.exists, timeout=10, message="the first request's claim")

        # when: the client retries meanwhile
        retry = post(client_of(customer), body, key="k-6")

        # then: 409, nothing created by the retry
        assert retry.status_code == 409, retry.content
        assert retry.json()["error"]["code"] == "idempotency_key_in_use"
        lock.release()
        first_answer = first.result()

    assert first_answer.status_code == 202
    later = post(client_of(customer), body, key="k-6")
    assert later.status_code == 202 and later.content == first_answer.content
    assert Order.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_identical_requests_at_once_create_one_order(customer, payment_sim):
    # given
    product = product_with_stock(50)
    body = items(product, 2)
    clients = [client_of(customer) for _ in range(8)]
    barrier = threading.Barrier(len(clients))

    def send(client):
        barrier.wait()
        try:
            return post(client, body, key="double-click")
        finally:
            connections.close_all()

    # when: eight copies of the request at the same moment
    answers = [r.result() for r in [Background(lambda c=c: send(c)) for c in clients]]

    # then: one order; every 202 is that order's answer, the rest were told it is in flight
    assert Order.objects.count() == 1
    accepted = [a for a in answers if a.status_code == 202]
    assert accepted and {a.content for a in accepted} == {accepted[0].content}
    assert all(
        a.status_code == 409 and a.json()["error"]["code"] == "idempotency_key_in_use"
        for a in answers
        if a.status_code != 202
    )
    assert accepted[0].json()["id"] == Order.objects.get().id


@pytest.mark.django_db(transaction=True)
def test_a_request_whose_claim_was_retaken_creates_nothing(customer, settings, payment_sim):
    # given: a first request that has been stuck so long its claim is considered abandoned
    product = product_with_stock(5)
    body = items(product)
    with TableLock("payments_payment") as lock:
        stuck = Background(lambda: post(client_of(customer), body, key="k-7"))
        wait_for(IdempotencyKey.objects.exists, timeout=10, message="the first request's claim")
        token = IdempotencyKey.objects.get().claim_token
        IdempotencyKey.objects.update(
            claimed_at=timezone.now()
            - timedelta(seconds=settings.IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS + 1)
        )

        # when: a retry takes the claim over, then both go on
        retry = Background(lambda: post(client_of(customer), body, key="k-7"))
        wait_for(
            lambda: IdempotencyKey.objects.get().claim_token != token,
            timeout=10,
            message="the retry to take the claim over",
        )
        lock.release()
        stuck_answer, retry_answer = stuck.result(), retry.result()

    # then: the retry made the one order; the stuck request rolled its own back
    assert retry_answer.status_code == 202, retry_answer.content
    assert stuck_answer.status_code == 409
    assert stuck_answer.json()["error"]["code"] == "idempotency_key_in_use"
    assert list(Order.objects.values_list("id", flat=True)) == [retry_answer.json()["id"]]
    replay = post(client_of(customer), body, key="k-7")
    assert replay.content == retry_answer.content


@pytest.mark.django_db
def test_purge_deletes_only_keys_past_their_lifetime(customer_client, settings):
    # given: three keys, one of them older than the lifetime
    product = product_with_stock(5)
    for key in ("old", "recent", "new"):
        assert post(customer_client, items(product), key=key).status_code == 202
    IdempotencyKey.objects.filter(key="old").update(
        created_at=timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS, minutes=1)
    )
    IdempotencyKey.objects.filter(key="recent").update(
        created_at=timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS - 1)
    )

    # when: the beat task runs (twice: it is safe to repeat)
    deleted = purge_idempotency_keys()
    deleted_again = idempotency_key_purge()

    # then
    assert (deleted, deleted_again) == (1, 0)
    assert set(IdempotencyKey.objects.values_list("key", flat=True)) == {"recent", "new"}
    assert Order.objects.count() == 3  # the orders stay


@pytest.mark.django_db
def test_the_purge_is_on_the_beat_schedule_of_a_fresh_install():
    # given: the test database was just migrated, as on a fresh install
    task = PeriodicTask.objects.get(name="purge-idempotency-keys")

    # then: scheduled hourly, enabled, naming a task the worker knows
    assert task.enabled
    assert task.task == PURGE_IDEMPOTENCY_KEYS
    assert task.interval.every == 3600 and task.interval.period == "seconds"
    assert PURGE_IDEMPOTENCY_KEYS in celery_app.tasks

    # and migrating again changes nothing, keeping an operator's edit
    task.interval.every = 7200
    task.interval.save()
    ensure_periodic_tasks()
    assert PeriodicTask.objects.filter(name="purge-idempotency-keys").count() == 1
    assert PeriodicTask.objects.get(name="purge-idempotency-keys").interval.every == 7200
