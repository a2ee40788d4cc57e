"""The workflow run by a real Celery worker process, through the real broker."""

import itertools

import pytest

from inventory.models import StockLevel
from inventory.services import stock_set_from_warehouse
from inventory.tests.factories import product_with_stock
from orderproj.celery import app
from orders.dispatch import PROCESS_ORDER
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


def test_order_goes_pending_reserved_confirmed_through_a_real_worker(customer_client, payment_sim):
    # given
    product = product_with_stock(10)

    # when
    order_id = post_order(customer_client, (product.id, 3))

    # then
    order = wait_for_status(order_id, "confirmed")
    assert log_events(order) == [
        ("", "pending", "created"),
        ("pending", "reserved", "reserved"),
        ("reserved", "confirmed", "confirmed"),
    ]
    level = StockLevel.objects.get(product=product)
    assert (level.reserved, level.committed, level.available) == (0, 3, 7)
    api_logs = customer_client.get(f"/api/orders/{order_id}/logs/").json()["results"]
    assert [e["to_status"] for e in api_logs] == ["pending", "reserved", "confirmed"]


def test_restocked_while_waiting_is_confirmed(customer_client, payment_sim):
    product = product_with_stock(0)
    order_id = post_order(customer_client, (product.id, 2))
    wait_for(
        lambda: Order.objects.get(pk=order_id).logs.filter(event="stock_retry").exists(),
        timeout=20,
        message="a stock retry",
    )

    stock_set_from_warehouse(product_id=product.id, on_hand=5, version=2)

    order = wait_for_status(order_id, "confirmed", "failed")
    assert order.status == "confirmed"
    assert StockLevel.objects.get(product=product).committed == 2


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


def test_5xx_is_retried_by_the_worker_and_charged_once(customer_client, payment_sim):
    payment_sim.script("error")
    product = product_with_stock(3)

    order_id = post_order(customer_client, (product.id, 1))

    order = wait_for_status(order_id, "confirmed", "failed")
    assert order.status == "confirmed"
    key = order.payment.idempotency_key
    assert payment_sim.stats(key=key)["by_key"][key]["requests"] == 2
    assert payment_sim.stats()["charges"] == 1


def test_redelivered_task_changes_nothing(customer_client, payment_sim):
    product = product_with_stock(3)
    order_id = post_order(customer_client, (product.id, 1))
    order = wait_for_status(order_id, "confirmed")
    before = (log_events(order), StockLevel.objects.get(product=product).committed)

    # the same message delivered twice more, as after a lost ack
    for _ in range(2):
        app.send_task(PROCESS_ORDER, args=[order_id])
    wait_for(broker_idle, timeout=20, message="the worker to take and acknowledge both")

    assert (log_events(order), StockLevel.objects.get(product=product).committed) == before
    assert payment_sim.stats()["charges"] == 1
