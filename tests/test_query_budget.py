"""The database queries of orders' whole lives, counted in-process: the API accepting each
(token auth included), then a worker taking them up as one batch (claim, reserve, charge,
confirm, the push to the warehouse and its answer recorded, release). The payment service
and the warehouse are the live simulators; publishing to Celery is stubbed, since the test
runs the batch itself.

Counted are SQL statements; transaction control (BEGIN, COMMIT, SAVEPOINT ...), which
Django's CaptureQueriesContext also lists, is budgeted apart. The budgets are today's
counts, so a change that adds a query fails here. Lower them (never raise them) as the path
gets leaner; the batched pipeline's target is QUERY_TARGET_PER_ORDER over an order's life.
`make bench` counts the same steps on the running stack (queries_by_step in its JSON).
"""

from unittest import mock

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inventory.tests.factories import product_in_warehouse
from orders.models import Order
from orders.scheduling import orders_held
from orders.workflow import orders_advance
from webhooks.outbox import wanted_types

pytestmark = pytest.mark.django_db(transaction=True)  # the workflow refuses to charge in one

BATCH = 20
QUERY_TARGET_PER_ORDER = 6
# Today's counts. The API's are per order; the batch's are for the whole batch, whatever
# its size (orders/tests/test_batches.py holds that they do not grow with it).
API_CREATE_BUDGET = 3  # token, products, one statement writing the order's rows
# The stock ledger's rows cost one INSERT for each of reserve, commit and ship, and the
# shipment's answer one read of on_hand before it (19 before the ledger).
BATCH_BUDGET = 23
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def _split(captured: CaptureQueriesContext) -> tuple[list[str], list[str]]:
    """(SQL statements, transaction control statements), each shortened for the report."""
    sql = [" ".join(q["sql"].split())[:160] for q in captured.captured_queries]
    control = [q for q in sql if q.upper().startswith(TRANSACTION_CONTROL)]
    return [q for q in sql if q not in control], control


def test_a_batch_of_orders_whole_lives_stays_within_the_query_budget(
    customer_client, payment_sim, warehouse_sim
):
    # given a product in stock, here and at the warehouse
    product = product_in_warehouse(warehouse_sim, 1000)

    # when the orders are accepted one by one, then taken up by a worker as one batch (each
    # process reads which webhook events are wanted once per WEBHOOK_TYPES_CACHE_SECONDS, not
    # per order: read here before counting)
    wanted_types()
    with mock.patch("orders.dispatch.publish", return_value=True) as published:
        creates = []
        for _ in range(BATCH):
            with CaptureQueriesContext(connection) as captured:
                response = customer_client.post(
                    "/api/orders/",
                    {"items": [{"product_id": product.id, "quantity": 1}]},
                    format="json",
                )
            assert response.status_code == 202, response.content
            creates.append(_split(captured))
        with (
            CaptureQueriesContext(connection) as captured,
            orders_held(limit=BATCH, seconds=settings.ORDER_CLAIM_SECONDS) as batch,
        ):
            steps = orders_advance(batch)
        processing = _split(captured)

    # then all are fulfilled, and neither the API nor the batch took more than its budget
    assert len(batch) == BATCH and all(step.done for step in steps.values())
    assert set(Order.objects.values_list("status", flat=True)) == {"fulfilled"}
    assert {c.args[0] for c in published.call_args_list} == {"orders.process_ready"}
    per_create = max(len(sql) for sql, _ in creates)
    per_order = per_create + len(processing[0]) / BATCH
    report = (
        f"api_create: {per_create} per order (budget {API_CREATE_BUDGET})"
        + "".join(f"\n  {q}" for q in creates[0][0])
        + f"\nbatch of {BATCH}: {len(processing[0])} (budget {BATCH_BUDGET})"
        + "".join(f"\n  {q}" for q in processing[0])
        + f"\nper order over its life: {per_order:.2f} (target {QUERY_TARGET_PER_ORDER})"
    )
    print(f"\n{report}")
    assert per_create <= API_CREATE_BUDGET, report
    assert len(processing[0]) <= BATCH_BUDGET, report
    assert per_order <= QUERY_TARGET_PER_ORDER, report
