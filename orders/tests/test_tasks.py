"""The workflow run by a real Celery worker process, through the real broker."""

import itertools

import pytest

from inventory.models import StockLevel
from inventory.sync import warehouse_sync
from inventory.tests.factories import product_in_warehouse, product_with_stock
from orderproj.celery import app
from orders.dispatch import FULFIL_ORDER, PROCESS_ORDER
from orders.models import Order
from orders.tests.helpers import log_events
from tests.live import broker_idle
from tests.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def wait_for_status(order_id: int, *statuses: str, timeout: float = 30) -> Order:
    def reached():
        order = Order.objects.select_related("payment").get(pk=order_id)
        return order if order.status in statuses else None

    return wait_for(reached, timeout=timeout, message=f"order {order_id} to reach {statuses}")


def post_order(client, *lines: tuple[int, int]) -> int:
    response = client.post(
        "/api/orders/",
        {"items": [{"product_id": p, "quantity": q} for p, q in lines]},
        format="json",
    )
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_order_goes_pending_reserved_confirmed_fulfilled_through_a_real_worker(
    customer_client, payment_sim, warehouse_sim
):
    # given
    product = product_in_warehouse(warehouse_sim, 10)

    # when
    order_id = post_order(customer_client, (product.id, 3))

    # then: each transition logged; reserved units became committed, then left with the
    # shipment, and on_hand follows the warehouse's answer
    order = wait_for_status(order_id, "fulfilled")
    assert log_events(order) == [
        ("", "pending", "created"),
        ("pending", "reserved", "reserved"),
        ("reserved", "confirmed", "confirmed"),
        ("confirmed", "fulfilled", "fulfilled"),
    ]
    confirmed = order.logs.get(event="confirmed")
    assert confirmed.data["payment_reference"] == order.payment.provider_reference
    level = StockLevel.objects.get(product=product)
    assert (level.on_hand, level.version, level.reserved, level.committed, level.available) == (
        7,
        2,
        0,
        0,
        7,
    )
    assert warehouse_sim.stock()[product.sku] == (7, 2)
    api_logs = customer_client.get(f"/api/orders/{order_id}/logs/").json()["results"]
    assert [e["to_status"] for e in api_logs] == ["pending", "reserved", "confirmed", "fulfilled"]


def test_restocked_while_waiting_is_confirmed(customer_client, payment_sim, warehouse_sim):
    product = product_in_warehouse(warehouse_sim, 0)
    order_id = post_order(customer_client, (product.id, 2))
    wait_for(
        lambda: Order.objects.get(pk=order_id).logs.filter(event="stock_retry").exists(),
        timeout=20,
        message="a stock retry",
    )

    # the warehouse is restocked, and a sync brings the news
    warehouse_sim.set_stock({product.sku: 5})
    assert warehouse_sync(trigger="test").applied == 1

    order = wait_for_status(order_id, "fulfilled", "failed")
    assert order.status == "fulfilled"
    assert [e[1] for e in log_events(order) if e[0] != e[1]] == [
        "pending",
        "reserved",
        "confirmed",
        "fulfilled",
    ]


def test_never_restocked_fails_out_of_stock_after_growing_delays(
    customer_client, payment_sim, worker_env
):
    product = product_with_stock(1)

    order_id = post_order(customer_client, (product.id, 5))

    order = wait_for_status(order_id, "failed", timeout=30)
    assert order.failure_reason == "out_of_stock"
    retries = list(order.logs.filter(event="stock_retry").order_by("id"))
    assert len(retries) == int(worker_env["ORDER_STOCK_RETRY_MAX"])
    planned = [r.data["retry_in_seconds"] for r in retries]
    assert planned == sorted(planned) and len(set(planned)) == len(planned)
    # each retry really waited at least the delay it announced
    moments = [r.created_at for r in retries] + [order.logs.get(event="out_of_stock").created_at]
    waited = [(b - a).total_seconds() for a, b in itertools.pairwise(moments)]
    assert all(w >= p * 0.95 for w, p in zip(waited, planned, strict=True)), (waited, planned)


def test_a_push_the_warehouse_does_not_answer_is_pushed_again_until_it_ships(
    customer_client, payment_sim, warehouse_sim
):
    # given: the warehouse answers nothing
    product = product_in_warehouse(warehouse_sim, 5)
    warehouse_sim.configure(error_rate=1.0)

    # when: an order is processed, and the warehouse comes back after the first push failed
    order_id = post_order(customer_client, (product.id, 2))
    wait_for(
        lambda: Order.objects.get(pk=order_id).logs.filter(event="shipment_retry").exists(),
        timeout=30,
        message="the first push to fail",
    )
    warehouse_sim.configure(error_rate=0.0)

    # then: a worker pushes it again after its backoff, counting the first push, and it
    # ships once
    order = wait_for_status(order_id, "fulfilled")
    retries = list(order.logs.filter(event="shipment_retry").order_by("id"))
    assert [r.data["attempt"] for r in retries] == list(range(1, len(retries) + 1))
    assert log_events(order)[-1] == ("confirmed", "fulfilled", "fulfilled")
    assert warehouse_sim.shipments()["count"] == 1
    assert StockLevel.objects.get(product=product).committed == 0


def test_5xx_is_retried_by_the_worker_and_charged_once(customer_client, payment_sim, warehouse_sim):
    payment_sim.script("error")
    product = product_in_warehouse(warehouse_sim, 3)

    order_id = post_order(customer_client, (product.id, 1))

    order = wait_for_status(order_id, "fulfilled", "failed")
    assert order.status == "fulfilled"
    key = order.payment.idempotency_key
    charges = payment_sim.requests(kind="charge")
    assert len(charges) == 2 and {r["idempotency_key"] for r in charges} == {key}
    assert payment_sim.stats()["captured"] == 1


def test_redelivered_tasks_change_nothing(customer_client, payment_sim, warehouse_sim):
    product = product_in_warehouse(warehouse_sim, 3)
    order_id = post_order(customer_client, (product.id, 1))
    order = wait_for_status(order_id, "fulfilled")
    stock_of = lambda: (  # noqa: E731
        StockLevel.objects.filter(product=product)
        .values("on_hand", "version", "reserved", "committed")
        .get()
    )
    before = (log_events(order), stock_of())

    # the same messages delivered twice more, as after a lost ack
    for _ in range(2):
        app.send_task(PROCESS_ORDER, args=[order_id])
        app.send_task(FULFIL_ORDER, args=[order_id])
    wait_for(broker_idle, timeout=20, message="the worker to take and acknowledge them")

    assert (log_events(order), stock_of()) == before
    assert len(payment_sim.requests(kind="charge")) == 1  # redeliveries sent none
    assert warehouse_sim.shipments()["count"] == 1
