"""The one check that no external call runs inside a database transaction."""

import pytest
from django.db import transaction

from core.http import CallInsideTransaction, ServiceClient


class Unavailable(Exception):
    pass


class Client(ServiceClient):
    unavailable = Unavailable


@pytest.mark.django_db(transaction=True)
def test_a_call_inside_a_transaction_is_refused_before_it_leaves(simulator_server, payment_sim):
    client = Client(simulator_server.payment_url, connect_timeout=2, read_timeout=2)

    with transaction.atomic(), pytest.raises(CallInsideTransaction):
        client._send("GET", "/charges/some-key")

    assert payment_sim.requests() == []  # nothing reached the service
    assert client._send("GET", "/charges/some-key").status_code == 404  # outside: it goes
