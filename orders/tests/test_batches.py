"""Orders moved in batches (orders.workflow.orders_advance): every outcome in one batch, each
order ended correctly, and a number of statements per batch that does not grow with it.
Real PostgreSQL; the payment service and the warehouse over HTTP."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inventory.models import StockLevel
from inventory.tests.factories import product_in_warehouse
from orders.models import Order
from orders.tests.helpers import place_order
from orders.workflow import orders_advance

pytestmark = pytest.mark.django_db(transaction=True)

TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def load(ids: list[int]) -> list[Order]:
    return list(Order.objects.select_related("payment").filter(pk__in=ids).order_by("pk"))


def run_until_done(ids: list[int], *, rounds: int = 10) -> None:
    """Advance the orders, batch after batch, as the workers would (without the waits)."""
    for _ in range(rounds):
        steps = orders_advance(load(ids))
        ids = [pk for pk, step in steps.items() if not step.done]
        if not ids:
            return
    raise AssertionError(f"orders {ids} still not done")


def statements(captured: CaptureQueriesContext) -> list[str]:
    sql = [" ".join(q["sql"].split()) for q in captured.captured_queries]
    return [q for q in sql if not q.upper().startswith(TRANSACTION_CONTROL)]


def test_a_batch_with_every_kind_of_outcome_ends_every_order_correctly(
    customer, payment_sim, warehouse_sim, settings
):
    # given: a scarce product with 2 units for 3 orders of one, and orders of an ample one
    # whose charges are captured, declined, answered too late (captured) and refused (503)
    settings.ORDER_STOCK_RETRY_MAX = 1
    scarce, ample = product_in_warehouse(warehouse_sim, 2), product_in_warehouse(warehouse_sim, 50)
    first, second, third = (place_order(customer, (scarce.id, 1)) for _ in range(3))
    paid, declined, late, errored = (place_order(customer, (ample.id, 2)) for _ in range(4))
    payment_sim.script("decline", key=declined.payment.idempotency_key)
    payment_sim.script("timeout", key=late.payment.idempotency_key)
    payment_sim.script("error", key=errored.payment.idempotency_key)
    ids = [o.pk for o in (first, second, third, paid, declined, late, errored)]

    # when: all seven in one batch
    steps = orders_advance(load(ids))

    # then: what could end did; the others wait, each for its own reason
    status = dict(Order.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert {pk: status[pk] for pk in (first.pk, second.pk, paid.pk)} == dict.fromkeys(
        (first.pk, second.pk, paid.pk), "fulfilled"
    )
    assert Order.objects.get(pk=declined.pk).failure_reason == "payment_declined"
    assert (status[third.pk], steps[third.pk].done) == ("pending", False)  # no stock left
    assert (status[late.pk], steps[late.pk].done) == ("reserved", False)  # in doubt
    assert (status[errored.pk], steps[errored.pk].done) == ("reserved", False)
    assert steps[paid.pk].done and steps[declined.pk].done
    assert warehouse_sim.shipments()["count"] == 3

    # and when the waiting ones are taken up again
    run_until_done([third.pk, late.pk, errored.pk])

    # then: the late capture was found by its key, the 503 charged again, the third order
    # failed for want of stock; nothing held, nothing charged twice
    final = dict(Order.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert final == {
        first.pk: "fulfilled",
        second.pk: "fulfilled",
        third.pk: "failed",
        paid.pk: "fulfilled",
        declined.pk: "failed",
        late.pk: "fulfilled",
        errored.pk: "fulfilled",
    }
    assert Order.objects.get(pk=third.pk).failure_reason == "out_of_stock"
    levels = {
        lvl.product_id: (lvl.on_hand, lvl.reserved, lvl.committed)
        for lvl in StockLevel.objects.all()
    }
    assert levels == {scarce.id: (0, 0, 0), ample.id: (44, 0, 0)}
    for order in (paid, late, errored):
        key = Order.objects.get(pk=order.pk).payment.idempotency_key
        assert payment_sim.charge(key)["status"] == "captured"
    late_requests = [r["kind"] for r in payment_sim.requests(late.payment.idempotency_key)]
    assert late_requests == ["charge", "lookup"]  # found by its key, never charged again
    assert payment_sim.stats()["captured"] == 5


def test_the_statements_of_a_batch_do_not_grow_with_it(customer, payment_sim, warehouse_sim):
    def one_batch(size: int) -> list[str]:
        product = product_in_warehouse(warehouse_sim, 1000)
        ids = [place_order(customer, (product.id, 1)).pk for _ in range(size)]
        orders = load(ids)
        with CaptureQueriesContext(connection) as captured:
            steps = orders_advance(orders)
        assert all(step.done for step in steps.values())
        assert set(Order.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
            "fulfilled"
        }
        return statements(captured)

    small, large = one_batch(2), one_batch(25)

    assert len(large) == len(small), "\n".join(large)
    assert len(large) <= 20, "\n".join(large)
