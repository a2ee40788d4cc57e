"""Cancelling an order in each state, over the API and in the admin, against real PostgreSQL
and the payment simulator over HTTP (the refund runs outside any transaction, so these tests
run without the wrapping transaction of ordinary tests)."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from inventory.models import StockLevel
from inventory.tests.factories import product_with_stock
from orders.models import Order, OrderEvent, OrderStatus
from orders.reconciler import reconcile
from orders.tests.conftest import Background
from orders.tests.helpers import (
    advance,
    fulfil_without_warehouse,
    log_events,
    place_order,
    reserve,
    run_to_completion,
    try_payment,
)
from orders.transitions import order_transition
from payments.gateway import get_gateway
from tests.interleave import Pause
from tests.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def cancel(client, order_id: int):
    return client.post(f"/api/orders/{order_id}/cancel/")


def stock(product) -> tuple[int, int, int]:
    level = StockLevel.objects.get(product=product)
    return level.reserved, level.committed, level.available


def test_cancelling_a_pending_order(customer, customer_client):
    # given
    product = product_with_stock(5)
    order = place_order(customer, (product.id, 2))

    # when
    response = cancel(customer_client, order.id)

    # then
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert response.json()["payment"]["status"] == "voided"  # never charged, never will be
    order.refresh_from_db()
    assert log_events(order)[-1] == ("pending", "cancelled", "cancelled")
    entry = order.logs.last()
    assert (entry.actor, entry.data) == (customer, {"via": "api", "refunded": False})
    assert stock(product) == (0, 0, 5)


def test_cancelling_a_reserved_order_releases_its_stock(customer, customer_client):
    # given
    product = product_with_stock(5)
    order = place_order(customer, (product.id, 2))
    reserve(order)
    assert stock(product) == (2, 0, 3)

    # when
    response = cancel(customer_client, order.id)

    # then
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["payment"]["status"] == "voided"
    assert stock(product) == (0, 0, 5)
    assert log_events(Order.objects.get(pk=order.id))[-1] == ("reserved", "cancelled", "cancelled")


def test_a_worker_that_loaded_the_order_before_its_cancellation_never_charges_it(
    customer, customer_client, payment_sim
):
    # given: a worker has read the order as reserved, its payment as never charged
    product = product_with_stock(5)
    order = place_order(customer, (product.id, 2))
    reserve(order)
    stale = Order.objects.select_related("payment").get(pk=order.id)

    # when: the order is cancelled, then that worker goes on to charge
    assert cancel(customer_client, order.id).status_code == 200
    charged = try_payment(stale.payment)

    # then: its claim of the first charge request found the payment voided; nothing was sent
    assert payment_sim.requests() == []
    assert charged.status == "voided"
    assert Order.objects.get(pk=order.id).payment.status == "voided"


@pytest.mark.embedded
def test_cancelling_a_confirmed_order_refunds_it_and_restores_the_stock(
    customer, customer_client, payment_sim
):
    # given: a confirmed order: charged, its units committed
    product = product_with_stock(5, price="20.00")
    order = place_order(customer, (product.id, 2))
    run_to_completion(order.id)
    order.refresh_from_db()
    assert order.status == "confirmed" and stock(product) == (0, 2, 3)

    # when
    response = cancel(customer_client, order.id)

    # then: refunded at the payment service, recorded, and the units available again
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["payment"]["status"] == "refunded"
    charge = payment_sim.charge(order.payment.idempotency_key)
    assert charge["status"] == "refunded" and charge["amount"] == "40.00"
    assert stock(product) == (0, 0, 5)
    order.refresh_from_db()
    assert order.payment.status == "refunded"
    assert log_events(order)[-2:] == [
        ("confirmed", "confirmed", "cancel_requested"),
        ("confirmed", "cancelled", "cancelled"),
    ]
    entry = order.logs.last()
    assert (entry.actor, entry.data) == (
        customer,
        {"via": "api", "refunded": True, "payment_reference": charge["id"]},
    )


def test_without_an_answer_from_the_payment_service_nothing_changes_and_a_retry_succeeds(
    customer, customer_client, payment_sim, settings
):
    # given: a confirmed order, and a payment service that cannot be reached
    product = product_with_stock(5)
    order = place_order(customer, (product.id, 1))
    run_to_completion(order.id)
    working_url = settings.PAYMENT_API_URL
    settings.PAYMENT_API_URL = f"http://127.0.0.1:{free_port()}/payments"
    get_gateway.cache_clear()

    # when
    response = cancel(customer_client, order.id)

    # then: 503 in the error shape; the order, its payment and the stock as they were
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "payment_service_unavailable"
    assert "not cancelled" in error["message"]
    order.refresh_from_db()
    assert order.status == "confirmed" and order.payment.status == "refund_in_doubt"
    assert stock(product) == (0, 1, 4)
    assert payment_sim.charge(order.payment.idempotency_key)["status"] == "captured"
    assert log_events(order)[-1] == ("confirmed", "confirmed", "cancel_refund_unanswered")

    # and when the service is back, the same request cancels it
    settings.PAYMENT_API_URL = working_url
    get_gateway.cache_clear()
    assert cancel(customer_client, order.id).json()["status"] == "cancelled"
    assert payment_sim.charge(order.payment.idempotency_key)["status"] == "refunded"
    assert stock(product) == (0, 0, 5)


@pytest.mark.parametrize(
    ("status", "reason"), [("fulfilled", "already shipped"), ("failed", "already failed")]
)
def test_a_shipped_or_failed_order_cannot_be_cancelled(
    customer, customer_client, payment_sim, status, reason
):
    # given: an order the warehouse shipped, or one whose payment was declined
    product = product_with_stock(5)
    order = place_order(customer, (product.id, 1))
    if status == "failed":
        payment_sim.script("decline")
    run_to_completion(order.id)
    order.refresh_from_db()
    if status == "fulfilled":
        order = fulfil_without_warehouse(order)
    assert order.status == status
    charge = payment_sim.charge(order.payment.idempotency_key)["status"]
    before = (log_events(order), stock(product), charge)

    # when
    response = cancel(customer_client, order.id)

    # then: 409 saying why; the order, the stock and the charge as they were
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "order_not_cancellable"
    assert reason in error["message"]
    assert error["details"] == {"order_id": order.id, "status": status}
    after = payment_sim.charge(order.payment.idempotency_key)["status"]
    assert (log_events(order), stock(product), after) == before


def test_cancelling_twice_changes_things_once(customer, customer_client, payment_sim):
    product = product_with_stock(5)
    order = place_order(customer, (product.id, 2))
    run_to_completion(order.id)

    first, second = cancel(customer_client, order.id), cancel(customer_client, order.id)

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json() == first.json()
    assert [e[2] for e in log_events(order)].count("cancelled") == 1
    assert stock(product) == (0, 0, 5)
    assert payment_sim.stats()["refunded"] == 1


def test_another_customers_order_cannot_be_cancelled(customer, other_client):
    order = place_order(customer, (product_with_stock(5).id, 1))

    response = cancel(other_client, order.id)

    assert response.status_code == 404
    assert Order.objects.get(pk=order.id).status == "pending"


def test_staff_cancel_any_order(customer, staff_client):
    order = place_order(customer, (product_with_stock(5).id, 1))

    response = cancel(staff_client, order.id)

    assert response.status_code == 200
    assert Order.objects.get(pk=order.id).logs.last().actor.username == "operator"


def test_cancelled_while_its_charge_is_in_flight_the_capture_is_refunded(
    customer, customer_client, payment_sim
):
    # given: the worker charged a reserved order; the capture's answer is on its way back
    product = product_with_stock(5)
    order = place_order(customer, (product.id, 2))
    with Pause("payment.charge.answered", payment_id=order.payment_id) as answered:
        worker = Background(lambda: run_to_completion(order.id))
        answered.wait_reached()

        # when: the customer cancels meanwhile
        response = cancel(customer_client, order.id)
        assert response.status_code == 200, response.content
        assert stock(product) == (0, 0, 5)  # released at once
    worker.result()

    # then: the capture that arrived for the cancelled order was refunded; nothing committed
    order.refresh_from_db()
    assert order.status == "cancelled"
    assert payment_sim.charge(order.payment.idempotency_key)["status"] == "refunded"
    assert order.payment.status == "refunded"
    assert [e[2] for e in log_events(order)][-2:] == ["cancelled", "refunded"]
    assert stock(product) == (0, 0, 5)


def test_cancelled_while_its_charge_timed_out_the_reconciler_finds_and_refunds_the_capture(
    customer, customer_client, payment_sim
):
    # given: the charge was captured but its answer lost; the engine will retry
    product = product_with_stock(5)
    order = place_order(customer, (product.id, 1))
    payment_sim.script("timeout")
    step = advance(order.id)[order.id]
    assert not step.done
    assert Order.objects.get(pk=order.id).payment.status == "in_doubt"

    # when: cancelled, then the reconciler's sweep of payments no order wants passes
    assert cancel(customer_client, order.id).status_code == 200
    assert reconcile().refunded == 1

    # then: it asked the payment service and refunded the capture it found
    order.refresh_from_db()
    assert order.status == "cancelled"
    key = order.payment.idempotency_key
    assert payment_sim.charge(key)["status"] == "refunded"
    assert [r["kind"] for r in payment_sim.requests(key)] == ["charge", "lookup", "refund"]
    assert stock(product) == (0, 0, 5)


def test_a_confirmed_order_is_never_cancelled_without_its_refund(customer, payment_sim):
    # given: a cancel that read the order as reserved, while the worker confirmed it since
    product = product_with_stock(5)
    order = place_order(customer, (product.id, 1))
    run_to_completion(order.id)
    stale = Order.objects.select_related("payment").get(pk=order.id)

    # when: the cancellation decided for a reserved order is applied
    moved = order_transition(
        orders=[stale], event=OrderEvent.CANCELLED, source=OrderStatus.RESERVED, actor=customer
    )

    # then: it is refused, changing nothing (the canceller judges the order again, and a
    # confirmed one is refunded first)
    assert moved == []
    assert Order.objects.get(pk=order.id).status == "confirmed"
    assert stock(product) == (0, 1, 4)


# --- admin -------------------------------------------------------------------------------


@pytest.fixture
def operator_client(client):
    operator = get_user_model().objects.create_user("op", password="pw", is_staff=True)
    operator.user_permissions.add(
        Permission.objects.get(codename="view_order"),
        Permission.objects.get(codename="cancel_order"),
    )
    client.force_login(operator)
    return client


def test_an_operator_cancels_orders_in_the_admin(customer, operator_client, payment_sim):
    # given: a confirmed, a pending and a fulfilled order
    product = product_with_stock(10)
    confirmed = place_order(customer, (product.id, 2))
    run_to_completion(confirmed.id)
    pending = place_order(customer, (product.id, 1))
    shipped = place_order(customer, (product.id, 1))
    run_to_completion(shipped.id)
    fulfil_without_warehouse(shipped)

    # when: the admin action runs on all three
    response = operator_client.post(
        "/admin/orders/order/",
        {
            "action": "cancel_orders",
            "_selected_action": [confirmed.id, pending.id, shipped.id],
        },
        follow=True,
    )

    # then: the two that can be are cancelled (the confirmed one refunded); the third refused
    assert response.status_code == 200
    page = response.content.decode()
    assert f"Cancelled order(s) {confirmed.id}, {pending.id}." in page
    assert f"order {shipped.id}" in page and "already shipped" in page
    statuses = dict(Order.objects.values_list("id", "status"))
    assert statuses == {confirmed.id: "cancelled", pending.id: "cancelled", shipped.id: "fulfilled"}
    assert payment_sim.charge(confirmed.payment.idempotency_key)["status"] == "refunded"
    entry = Order.objects.get(pk=confirmed.id).logs.last()
    assert (entry.data["via"], entry.actor.username) == ("admin", "op")


def test_the_cancel_action_needs_the_cancel_permission(customer, client):
    viewer = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(viewer)
    order = place_order(customer, (product_with_stock(5).id, 1))

    page = client.get("/admin/orders/order/").content.decode()
    client.post("/admin/orders/order/", {"action": "cancel_orders", "_selected_action": [order.id]})

    assert "cancel_orders" not in page
    assert Order.objects.get(pk=order.id).status == "pending"
