"""The state machine's migrations on a database with rows written by the code before them:
every payment gets its order from the old reference, open orders get the columns the
workflow decides from (filled from their logs), a confirmed order caught mid-cancellation is
marked as being cancelled, log rows get their acting user."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("orders", "0002_api_idempotency_and_cancel"), ("payments", "0002_refund_in_doubt")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def leaf_nodes():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.mark.embedded
@pytest.mark.django_db(transaction=True)
def test_orders_payments_and_logs_written_before_are_carried_over():
    # given: the schema as it was, with what that code wrote
    old = migrate(BEFORE)
    Order, OrderLog = old.get_model("orders", "Order"), old.get_model("orders", "OrderLog")
    Payment = old.get_model("payments", "Payment")
    customer = get_user_model().objects.create_user("alice")
    get_user_model().objects.create_user("operator", is_staff=True)
    an_hour_ago = timezone.now() - timedelta(hours=1)

    def order(status: str, payment_status: str, *, attempts: int = 1, reason: str = ""):
        placed = Order(customer_id=customer.pk, total=Decimal("10.00"), status=status)
        placed.failure_reason = reason
        placed.payment = Payment.objects.create(
            reference=f"order:{placed.uid}",
            amount=Decimal("10.00"),
            status=payment_status,
            attempts=attempts,
        )
        placed.save()
        return placed

    waiting = order("pending", "pending", attempts=0)
    OrderLog.objects.create(order=waiting, event="created", to_status="pending")
    for _ in range(2):
        OrderLog.objects.create(
            order=waiting, event="stock_retry", from_status="pending", to_status="pending"
        )
    OrderLog.objects.filter(order=waiting).update(created_at=an_hour_ago)
    reserved = order("reserved", "in_doubt")
    OrderLog.objects.create(
        order=reserved, event="reserved", from_status="pending", to_status="reserved"
    )
    cancelling = order("confirmed", "refund_in_doubt")
    OrderLog.objects.create(
        order=cancelling,
        event="cancel_refund_unanswered",
        from_status="confirmed",
        to_status="confirmed",
        data={"by": "alice", "via": "api"},
    )
    retried = order("pending", "pending", attempts=0)
    replaced = Payment.objects.create(
        reference=f"order:{retried.uid}", amount=Decimal("10.00"), status="declined", attempts=1
    )
    OrderLog.objects.create(
        order=retried,
        event="retried",
        from_status="failed",
        to_status="pending",
        data={"by": "operator", "payment_id": retried.payment_id},
    )
    failed = order("failed", "in_doubt", reason="payment_error")

    # when
    new = migrate(leaf_nodes())

    # then: every payment belongs to its order; the unwanted ones are abandoned
    Order, OrderLog = new.get_model("orders", "Order"), new.get_model("orders", "OrderLog")
    Payment = new.get_model("payments", "Payment")
    for placed in (waiting, reserved, cancelling, retried, failed):
        assert Payment.objects.get(pk=placed.payment_id).order_id == placed.uid
    assert Payment.objects.get(pk=replaced.pk).order_id == retried.uid
    abandoned = set(Payment.objects.filter(abandoned_at__isnull=False).values_list("pk", flat=True))
    assert abandoned == {replaced.pk, failed.payment_id}
    assert Payment.objects.get(pk=reserved.payment_id).last_attempt_at is not None

    # the columns the workflow decides from, from the logs
    waiting_now = Order.objects.get(pk=waiting.pk)
    assert waiting_now.stock_attempts == 2
    assert abs(waiting_now.progressed_at - an_hour_ago) < timedelta(seconds=1)
    assert Order.objects.get(pk=reserved.pk).reserved_at is not None

    # the order caught mid-cancellation is being cancelled, in its canceller's name
    cancelling_now = Order.objects.get(pk=cancelling.pk)
    assert cancelling_now.cancel_requested_at is not None
    assert cancelling_now.cancel_requested_by_id == customer.pk
    assert cancelling_now.cancel_requested_via == "api"

    # the log rows' acting users
    actors = dict(OrderLog.objects.exclude(actor=None).values_list("event", "actor__username"))
    assert actors == {"cancel_refund_unanswered": "alice", "retried": "operator"}


@pytest.mark.embedded
@pytest.mark.django_db(transaction=True)
def test_payments_abandoned_without_a_charge_before_the_voided_status_are_voided():
    # given: the schema just before, with payments as that code left them
    from django.db import transaction

    old = migrate([("payments", "0006_payment_status_voided")])
    Order, Payment = old.get_model("orders", "Order"), old.get_model("payments", "Payment")
    customer = get_user_model().objects.create_user("alice")

    def payment(status: str, *, attempts: int, abandoned: bool):
        with transaction.atomic():
            placed = Order(customer_id=customer.pk, total=Decimal("10.00"))
            made = Payment.objects.create(
                order_id=placed.uid,
                amount=Decimal("10.00"),
                status=status,
                attempts=attempts,
                abandoned_at=timezone.now() if abandoned else None,
            )
            placed.payment = made
            placed.save()
        return made.pk

    never_charged = payment("pending", attempts=0, abandoned=True)
    still_wanted = payment("pending", attempts=0, abandoned=False)
    charge_requested = payment("not_charged", attempts=1, abandoned=True)

    # when
    new = migrate(leaf_nodes())

    # then: only the abandoned one that was never charged is voided
    statuses = dict(new.get_model("payments", "Payment").objects.values_list("pk", "status"))
    assert statuses == {
        never_charged: "voided",
        still_wanted: "pending",
        charge_requested: "not_charged",
    }
