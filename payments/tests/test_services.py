"""Payment services against the payment simulator over HTTP: what a refusal and an unknown
answer mean."""

import pytest
import requests

from inventory.tests.factories import product_with_stock
from orders.tests.helpers import place_order, run_to_completion
from payments.gateway import PaymentGatewayUnavailable, get_gateway
from payments.models import Payment
from payments.services import payment_refund, payment_settle

pytestmark = pytest.mark.django_db(transaction=True)


def captured_payment(customer) -> Payment:
    order = place_order(customer, (product_with_stock(5).id, 1))
    run_to_completion(order.id)
    payment = Payment.objects.get(order=order)
    assert payment.status == "captured"
    return payment


def test_a_refund_refused_because_it_was_made_already_counts_as_made(customer, payment_sim):
    # given: the provider refunded the charge (its answer to us lost), then refuses repeats
    payment = captured_payment(customer)
    payment_sim.session.post(
        f"{payment_sim.url}/charges/{payment.idempotency_key}/refund", timeout=5
    ).raise_for_status()
    payment_sim.fail_next("refund", 400, key=payment.idempotency_key)

    # when
    refunded = payment_refund(payment=payment)

    # then: it asked, and recorded what the provider holds
    assert refunded.status == "refunded"
    assert Payment.objects.get(pk=payment.pk).status == "refunded"


def test_a_refund_in_doubt_is_looked_up_before_refunding_again(customer, payment_sim):
    payment = captured_payment(customer)
    payment_sim.session.post(
        f"{payment_sim.url}/charges/{payment.idempotency_key}/refund", timeout=5
    ).raise_for_status()
    Payment.objects.filter(pk=payment.pk).update(status="refund_in_doubt")

    assert payment_settle(payment=Payment.objects.get(pk=payment.pk)) is False  # not by us

    kinds = [r["kind"] for r in payment_sim.requests(payment.idempotency_key)]
    assert kinds[-1] == "lookup" and kinds.count("refund") == 1
    assert Payment.objects.get(pk=payment.pk).status == "refunded"


def test_a_charge_status_that_says_nothing_final_is_no_answer():
    response = requests.Response()
    response.status_code = 200
    response._content = b'{"id": "ch_1", "status": "pending"}'

    with pytest.raises(PaymentGatewayUnavailable, match="not final"):
        get_gateway()._charge(response)
