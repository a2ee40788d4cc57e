"""A user deleted while a web process still remembers their API token
(TOKEN_CACHE_SECONDS): what they send next is refused as unauthenticated, not a 500 from the
rows that would name a user who is gone. On both backends."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.tests.factories import ProductFactory
from orders.models import Order

pytestmark = pytest.mark.embedded


@pytest.mark.django_db(transaction=True)
def test_a_user_deleted_while_their_token_is_remembered_gets_a_401_not_a_500(customer, settings):
    # given: a process that has seen the customer's token
    settings.TOKEN_CACHE_SECONDS = 60
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=customer).key}")
    assert client.get("/api/orders/").status_code == 200
    product = ProductFactory()

    # when: the user is deleted in the admin, and the client goes on
    customer.delete()
    response = client.post(
        "/api/orders/", {"items": [{"product_id": product.id, "quantity": 1}]}, format="json"
    )

    # then: refused as unauthenticated, and nothing written
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "authentication_failed"
    assert not Order.objects.exists()
