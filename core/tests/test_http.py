"""The one check that no external call runs inside a database transaction."""

import time

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


def test_an_answer_dripped_a_byte_at_a_time_is_cut_at_the_calls_deadline(
    simulator_server, payment_sim
):
    # given: a service that sends its answer a byte every 0.1 s (each byte well within the
    # read timeout, the whole answer some 30 s)
    client = Client(simulator_server.payment_url, connect_timeout=0.3, read_timeout=0.3)
    payment_sim.configure(drip_interval_ms=100)
    payment_sim.fail_next("lookup", mode="drip")

    # when
    started = time.monotonic()
    with pytest.raises(Unavailable, match="took too long"):
        client._send("GET", "/charges/some-key")

    # then: given up at the call's deadline (connect + read timeout), not after the answer
    assert time.monotonic() - started < 0.6 + 0.3
    # and the next call on the same client is answered as usual
    assert client._send("GET", "/charges/some-key").status_code == 404


def test_an_answer_read_whole_leaves_its_connection_to_the_next_call(simulator_server, payment_sim):
    client = Client(simulator_server.payment_url, connect_timeout=2, read_timeout=2)

    for _ in range(3):
        assert client._send("GET", "/charges/some-key").json()["error"]["code"] == "not_found"

    pools = client.session.get_adapter(client.base_url).poolmanager.pools
    # (a RecentlyUsedContainer: it has keys(), but cannot be iterated)
    assert [pools[key].num_connections for key in pools.keys()] == [1]  # noqa: SIM118
