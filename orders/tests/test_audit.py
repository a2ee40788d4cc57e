"""audit_stock --with-provider: every charge ever requested (replaced and in-doubt payments
included) against the payment service, every shipment against the warehouse."""

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from inventory.fulfilment import shipments_push
from inventory.tests.factories import product_in_warehouse, product_with_stock
from orders.audit import audit
from orders.interventions import order_retry
from orders.models import Order
from orders.tests.helpers import (
    capture_at_provider,
    fulfil_without_warehouse,
    place_order,
    run_to_completion,
)
from payments.models import Payment

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_clean_system_audits_clean_with_the_provider_and_the_warehouse(
    customer, payment_sim, warehouse_sim, capsys
):
    order = place_order(customer, (product_in_warehouse(warehouse_sim, 5).id, 2))
    run_to_completion(order.id)

    call_command("audit_stock", "--with-provider")

    out = capsys.readouterr().out
    assert "1 charges at the provider, 1 shipments at the warehouse" in out
    assert "clean" in out


def test_a_capture_on_a_payment_a_retry_replaced_is_a_violation(
    customer, payment_sim, settings, staff_user
):
    # given: a declined order retried; its old key captured after all (at the provider only)
    order = place_order(customer, (product_with_stock(5).id, 1))
    payment_sim.script("decline")
    run_to_completion(order.id)
    old = Order.objects.get(pk=order.pk).payment
    order_retry(order=Order.objects.get(pk=order.pk), actor=staff_user)
    payment_sim.reset()  # the provider's record of the old key changes: now a capture
    capture_at_provider(old)

    result = audit(with_provider=True)

    assert any(
        f"payment {old.pk} of order {order.pk}" in v and "a replaced payment" in v
        for v in result.violations
    ), result.violations


def test_an_in_doubt_payment_of_a_failed_order_holding_a_capture_is_a_violation(
    customer, payment_sim
):
    order = place_order(customer, (product_with_stock(5).id, 1))
    Order.objects.filter(pk=order.pk).update(status="failed", failure_reason="payment_error")
    Payment.objects.filter(pk=order.payment_id).update(
        status="in_doubt", attempts=1, abandoned_at=timezone.now()
    )
    capture_at_provider(order.payment)

    result = audit(with_provider=True)

    assert result.in_doubt == 1
    assert any("unrefunded capture" in v for v in result.violations), result.violations


def test_shipments_the_warehouse_holds_are_held_against_the_orders(
    customer, payment_sim, warehouse_sim, capsys
):
    # given: a cancelled order the warehouse shipped anyway, and a fulfilled order it never did
    product = product_in_warehouse(warehouse_sim, 10)
    shipped = place_order(customer, (product.id, 1))
    shipments_push(shipments=[(str(shipped.uid), [(product.sku, 1)])])
    Order.objects.filter(pk=shipped.pk).update(status="cancelled")
    never = place_order(customer, (product_with_stock(5).id, 1))
    run_to_completion(never.id)  # confirmed: its SKU is unknown to the warehouse
    fulfil_without_warehouse(never)

    # when
    with pytest.raises(CommandError, match="violation"):
        call_command("audit_stock", "--with-provider")

    # then
    out = capsys.readouterr().out
    assert f"order {shipped.pk} (cancelled) was shipped by the warehouse but is cancelled" in out
    assert f"order {never.pk} is fulfilled but the warehouse holds no shipment for it" in out
