"""/metrics after a few orders processed by a real worker: the counts are right although the
orders were taken by the web process and processed by other processes."""

import pytest

from inventory.tests.factories import product_in_warehouse
from orderproj.tests.helpers import scrape
from orders.models import Order
from tests.live import broker_idle
from tests.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

PROCESS, FULFIL = "orders.process_ready", "orders.fulfil_order"


def task_runs(metrics: dict, task: str, state: str) -> float:
    key = ("orderproj_celery_task_duration_seconds_count", (("state", state), ("task", task)))
    return metrics.get(key, 0.0)


def test_metrics_count_orders_by_outcome_and_the_workers_task_runs(
    client, customer_client, payment_sim, warehouse_sim
):
    # given: four orders; the payment service declines one charge and fails one with a 5xx
    # (retried by the worker, then captured)
    product = product_in_warehouse(warehouse_sim, 10)
    before = scrape(client)
    payment_sim.script("decline", "error")

    # when
    for _ in range(4):
        response = customer_client.post(
            "/api/orders/", {"items": [{"product_id": product.id, "quantity": 1}]}, format="json"
        )
        assert response.status_code == 202, response.content
    wait_for(
        lambda: Order.objects.filter(status__in=["fulfilled", "failed"]).count() == 4,
        timeout=60,
        message="the four orders to be processed",
    )
    wait_for(broker_idle, timeout=30, message="the worker to finish its tasks")
    metrics = scrape(client)

    # then: business counts, from the database
    assert metrics[("orderproj_orders_created_total", ())] == 4
    assert metrics[("orderproj_orders_confirmed_total", ())] == 3
    assert metrics[("orderproj_orders_fulfilled_total", ())] == 3
    assert metrics[("orderproj_orders_failed_total", (("reason", "payment_declined"),))] == 1
    assert metrics[("orderproj_orders_failed_total", (("reason", "out_of_stock"),))] == 0
    assert metrics[("orderproj_orders", (("status", "fulfilled"),))] == 3
    assert metrics[("orderproj_orders", (("status", "failed"),))] == 1
    # task runs, recorded by the worker's processes: the batches that took the orders up (a
    # retry is an order waiting for its time, not a task retried)
    runs = {
        (task, state): task_runs(metrics, task, state) - task_runs(before, task, state)
        for task in (PROCESS, FULFIL)
        for state in ("success", "retry", "failure")
    }
    assert runs[(PROCESS, "success")] >= 2  # the first batches, then the 5xx's retry
    assert {k: v for k, v in runs.items() if k != (PROCESS, "success")} == {
        (PROCESS, "retry"): 0,
        (PROCESS, "failure"): 0,
        (FULFIL, "success"): 0,  # the batches shipped them
        (FULFIL, "retry"): 0,
        (FULFIL, "failure"): 0,
    }
    duration = (
        "orderproj_celery_task_duration_seconds_sum",
        (("state", "success"), ("task", PROCESS)),
    )
    assert metrics[duration] > before.get(duration, 0)
    inf_bucket = (
        "orderproj_celery_task_duration_seconds_bucket",
        (("le", "+Inf"), ("state", "success"), ("task", PROCESS)),
    )
    assert metrics[inf_bucket] == task_runs(metrics, PROCESS, "success")
    # and nothing is left waiting in the queue
    assert metrics[("orderproj_celery_queue_length", (("queue", "orders"),))] == 0
