"""API tokens are looked up once per process per TOKEN_CACHE_SECONDS, not on every request:
a deleted token stops working within that time, an unknown key never works. On both
backends."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.processes import wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def token_lookups(client: APIClient, times: int) -> int:
    with CaptureQueriesContext(connection) as queries:
        for _ in range(times):
            assert client.get("/api/orders/").status_code == 200
    return sum("authtoken_token" in q["sql"] for q in queries.captured_queries)


def test_a_key_is_looked_up_once_while_it_is_remembered(customer, settings):
    settings.TOKEN_CACHE_SECONDS = 60
    client = client_with(Token.objects.create(user=customer).key)

    assert token_lookups(client, 5) == 1


def test_with_the_cache_off_every_request_looks_the_key_up(customer, settings):
    settings.TOKEN_CACHE_SECONDS = 0
    client = client_with(Token.objects.create(user=customer).key)

    assert token_lookups(client, 3) == 3


def test_a_deleted_token_is_refused_once_the_time_is_up(customer, settings):
    # given: a key this process has seen
    settings.TOKEN_CACHE_SECONDS = 0.5
    token = Token.objects.create(user=customer)
    client = client_with(token.key)
    assert client.get("/api/orders/").status_code == 200

    # when
    token.delete()

    # then
    wait_for(
        lambda: client.get("/api/orders/").status_code == 401,
        timeout=5,
        message="the deleted token to be refused",
    )


def test_an_unknown_key_is_refused_every_time_and_never_remembered(settings):
    settings.TOKEN_CACHE_SECONDS = 60
    client = client_with("0" * 40)

    for _ in range(2):
        response = client.get("/api/orders/")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "authentication_failed"
