"""Fixtures shared by every app's tests."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def _user(username: str, *, staff: bool = False):
    return get_user_model().objects.create_user(
        username=username, password="pw-" + username, is_staff=staff
    )


@pytest.fixture
def customer(db):
    return _user("alice")


@pytest.fixture
def other_customer(db):
    return _user("bob")


@pytest.fixture
def staff_user(db):
    return _user("operator", staff=True)


def _client_for(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def customer_client(customer) -> APIClient:
    return _client_for(customer)


@pytest.fixture
def other_client(other_customer) -> APIClient:
    return _client_for(other_customer)


@pytest.fixture
def staff_client(staff_user) -> APIClient:
    return _client_for(staff_user)
