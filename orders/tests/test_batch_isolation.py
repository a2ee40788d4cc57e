"""A batch of orders under a provider or a warehouse that misbehaves: each order's retries
keep their budget and backoff whatever the provider does and wherever the task's time limit
cuts the batch, one order's fault stays that order's, a whole-request refusal becomes each
order's outcome, and only a refusal recorded for an order's current payment fails it. Real
PostgreSQL; the payment service and the warehouse over HTTP."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from inventory.tests.factories import product_in_warehouse, product_with_stock
from orders.models import Order
from orders.tasks import process_ready
from orders.tests.helpers import place_order
from orders.workflow import orders_advance
from payments.gateway import get_gateway
from tests.interleave import Inject, raise_
from tests.processes import HungServer, wait_for
from tests.timelimits import soft_time_limit

pytestmark = pytest.mark.django_db(transaction=True)


def load(*orders: Order) -> list[Order]:
    return list(
        Order.objects.select_related("payment").filter(pk__in=[o.pk for o in orders]).order_by("pk")
    )


def advance(*orders: Order) -> dict:
    """One batch of these orders through the engine, as a worker's claim would hand it."""
    return orders_advance(load(*orders))


def point_payments_at(settings, url: str) -> None:
    settings.PAYMENT_API_URL = url
    get_gateway.cache_clear()


# --- retries that keep their policy under any provider behaviour ------------------------------


def test_a_hung_provider_and_time_limits_cutting_every_batch_keep_each_order_within_its_budget(
    customer, payment_sim, settings
):
    # given: twelve reserved orders whose first charges were captured with their answers
    # lost; then the payment service accepts connections and never answers, each call takes
    # its whole read timeout, and the batch's calls outlast the task's soft time limit
    settings.PAYMENT_READ_TIMEOUT = settings.PAYMENT_CONNECT_TIMEOUT = 0.3
    settings.PAYMENT_BATCH_CONCURRENCY = 4
    settings.ORDER_BATCH_TIME_BUDGET_SECONDS = 0  # one batch per task
    product = product_with_stock(100)
    orders = [place_order(customer, (product.id, 1)) for _ in range(12)]
    payment_sim.script(*["timeout"] * len(orders))
    advance(*orders)
    assert {o.payment.status for o in load(*orders)} == {"in_doubt"}
    hung = HungServer()
    point_payments_at(settings, hung.url)

    # when: a worker takes them up again and again, each task cut by its soft time limit
    ids = [o.pk for o in orders]
    for _ in range(20):
        try:
            with soft_time_limit(0.5):
                process_ready()
        except SoftTimeLimitExceeded:
            pass
        if not Order.objects.filter(pk__in=ids, ready_at__isnull=False).exists():
            break  # every order has given up on the provider
        # the next task comes once an order is due again
        wait_for(
            lambda: Order.objects.filter(pk__in=ids, ready_at__lte=timezone.now()).exists(),
            timeout=5,
            interval=0.02,
            message="an order due again",
        )
    hung.close()

    # then: no order was tried more often than its budget, and every one of them waited
    # for the reconciler once its tries were spent
    current = load(*orders)
    tries = [o.payment.tries for o in current]
    assert max(tries) <= settings.ORDER_PAYMENT_RETRY_MAX, tries
    assert all(o.ready_at is None for o in current), [o.ready_at for o in current]
    for order in current:
        assert order.status == "reserved"
        assert order.logs.filter(event="payment_in_doubt").count() == 1


# --- each order isolated in its batch ------------------------------------------------------------


def test_a_warehouse_refusing_the_batch_request_as_too_large_still_ships_every_order(
    customer, payment_sim, warehouse_sim
):
    # given: a warehouse that takes one shipment per request, and two paid orders
    warehouse_sim.configure(max_batch=1)
    product = product_in_warehouse(warehouse_sim, 10)
    orders = [place_order(customer, (product.id, 1)) for _ in range(2)]

    # when: they go through the engine together
    advance(*orders)

    # then: the refused batch became a push per order, and both shipped
    assert [o.status for o in load(*orders)] == ["fulfilled", "fulfilled"]
    assert warehouse_sim.shipments()["count"] == 2


def test_a_batch_answer_whose_entry_for_one_order_is_not_an_object_ships_the_others(
    customer, payment_sim, warehouse_sim
):
    # given: two paid orders; the warehouse answers their batch with a result list whose
    # first entry is the string "shipped" instead of an object (the simulator's malformed
    # batch answer that seed 15 picks for a batch of two)
    product = product_in_warehouse(warehouse_sim, 10)
    first, second = (place_order(customer, (product.id, 1)) for _ in range(2))
    warehouse_sim.configure(seed=15)
    warehouse_sim.fail_next("batch", mode="malformed")

    # when: they go through the engine together
    steps = advance(first, second)

    # then: the order answered for shipped; the other one has no answer it can use, and
    # its push is tried again after its backoff (the warehouse shipped it, and says so)
    first, second = load(first, second)
    assert (first.status, second.status) == ("confirmed", "fulfilled")
    assert not steps[first.pk].done and first.logs.filter(event="shipment_retry").exists()
    advance(first)
    assert load(first)[0].status == "fulfilled"
    assert warehouse_sim.shipments()["count"] == 2


def test_one_orders_step_that_raises_is_logged_on_it_and_backed_off_while_the_rest_go_on(
    customer, payment_sim, warehouse_sim
):
    # given: three orders; the push of the second one raises, every time
    product = product_in_warehouse(warehouse_sim, 10)
    first, broken, third = (place_order(customer, (product.id, 1)) for _ in range(3))
    fault = raise_(RuntimeError("a bug in this order's push"))

    # when: they go through the engine together
    with Inject("order.ship.sending", fault, times=1000, order_id=broken.pk):
        steps = advance(first, broken, third)

    # then: the others shipped; the broken one is logged, counted and waits its backoff
    first, broken, third = load(first, broken, third)
    assert (first.status, third.status) == ("fulfilled", "fulfilled")
    assert broken.status == "confirmed"
    failure = broken.logs.get(event="step_failed")
    assert "RuntimeError: a bug in this order's push" in failure.message
    assert broken.step_errors == 1
    assert broken.ready_at is not None and broken.ready_at > timezone.now()
    assert not steps[broken.pk].done


class LongReferenceProvider:
    """The payment simulator, but for the keys named: their charges are answered (and looked
    up) with a provider reference of 100 characters, which real providers may use."""

    def __init__(self, upstream: str, keys: set[str]):
        self.upstream, self.keys = upstream, keys
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self._answer("POST")

            def do_GET(self) -> None:
                self._answer("GET")

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = requests.request(
                    method,
                    provider.upstream + self.path,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=10,
                )
                answer = upstream.content
                key = (
                    json.loads(body).get("idempotency_key")
                    if body
                    else self.path.rsplit("/", 1)[-1]
                )
                if key in provider.keys and upstream.ok:
                    charge = upstream.json()
                    charge["id"] = "ch_" + "x" * 97
                    answer = json.dumps(charge).encode()
                self.send_response(upstream.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_a_provider_reference_longer_than_usual_neither_stalls_its_order_nor_its_batch(
    customer, payment_sim, settings
):
    # given: three reserved orders; the provider names the second one's charge with a
    # reference of 100 characters
    product = product_with_stock(10)
    orders = [place_order(customer, (product.id, 1)) for _ in range(3)]
    long_named = load(orders[1])[0].payment.idempotency_key
    provider = LongReferenceProvider(settings.PAYMENT_API_URL, {long_named})
    point_payments_at(settings, provider.url)

    # when: they go through the engine together
    try:
        advance(*orders)
    finally:
        provider.close()

    # then: every one of them is paid and confirmed, the long reference kept
    current = load(*orders)
    assert [o.status for o in current] == ["confirmed"] * 3
    assert current[1].payment.provider_reference == "ch_" + "x" * 97


# --- only a refusal recorded for the order's current payment fails it ---------------------------


def test_a_key_in_use_refusal_of_a_second_charge_request_never_fails_an_order_the_first_paid(
    customer, payment_sim, settings
):
    # given: an order whose first charge request the provider is still processing when our
    # read timeout gives up (so a lookup finds no charge yet) ...
    product = product_with_stock(10)
    held = place_order(customer, (product.id, 1))
    payment_sim.configure(hold_charges=True)
    advance(held)
    key = load(held)[0].payment.idempotency_key
    assert load(held)[0].payment.status == "in_doubt"
    # ... and two new orders beside it; the provider answers the held order's second charge
    # request 400, "another request with this key is in progress", as some providers do
    others = [place_order(customer, (product.id, 1)) for _ in range(2)]
    payment_sim.fail_next("charge", 400, key=key)

    # when: the three go through the engine together, then the provider finishes the first
    # request (a capture) and the others', and the engine goes on
    advance(held, *others)
    payment_sim.configure(hold_charges=False)
    wait_for(lambda: payment_sim.charge(key), timeout=10, message="the held charge stored")
    for _ in range(settings.ORDER_PAYMENT_RETRY_MAX):
        if all(o.status == "confirmed" for o in load(held, *others)):
            break
        advance(held, *others)

    # then: the held order was not failed on the refusal: its capture confirmed it, and no
    # order of the three was charged twice or refunded
    assert [o.status for o in load(held, *others)] == ["confirmed"] * 3
    assert not Order.objects.get(pk=held.pk).logs.filter(event="payment_error").exists()
    assert payment_sim.charge(key)["status"] == "captured"
    assert payment_sim.stats()["refunded"] == 0
