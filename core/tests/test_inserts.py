"""insert_together: an order's rows (its payment, the order, its lines, its first log entry)
written as one statement on PostgreSQL and as one transaction of bulk inserts elsewhere, the
instances left as after a save(). Run on both backends."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection
from django.db.models import Value
from django.db.models.functions import Concat
from django.test.utils import CaptureQueriesContext

from core.inserts import Inserted, insert_together
from inventory.tests.factories import product_with_stock
from orders.models import Order, OrderLine, OrderLog
from payments.models import Payment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def _rows(customer, products, *, quantities):
    order = Order(customer=customer, total=Decimal("30.00"))
    payment = Payment(order_id=order.uid, amount=order.total)
    order.payment_id = Inserted(payment)
    lines = [
        OrderLine(order_id=Inserted(order), product=p, quantity=q, unit_price=Decimal("10.00"))
        for p, q in zip(products, quantities, strict=True)
    ]
    log = OrderLog(order_id=Inserted(order), event="created", to_status="pending", actor=customer)
    return payment, order, lines, log


def test_rows_naming_each_other_go_in_together_and_read_back_as_saved(customer):
    # given a payment, an order naming it, two lines and a log entry naming the order
    products = [product_with_stock(5), product_with_stock(5)]
    payment, order, lines, log = _rows(customer, products, quantities=[1, 2])

    # when they are inserted together
    with CaptureQueriesContext(connection) as captured:
        insert_together([payment], [order], lines, [log])

    # then each has its key, its references are its related rows (cached, as after a save)
    assert all(obj.pk for obj in (payment, order, *lines, log))
    with CaptureQueriesContext(connection) as reads:
        assert order.payment is payment and log.order is order
        assert [line.order for line in lines] == [order, order]
    assert reads.captured_queries == []
    # and the database holds them, related, with the defaults a save() gives
    stored = Order.objects.select_related("payment").get(pk=order.pk)
    assert stored.payment.pk == payment.pk and stored.payment.order_id == order.uid
    assert stored.status == "pending" and stored.created_at == order.created_at
    assert stored.ready_at is not None and stored.payment.idempotency_key
    assert sorted(OrderLine.objects.filter(order=order).values_list("product_id", "quantity")) == [
        (products[0].pk, 1),
        (products[1].pk, 2),
    ]
    assert list(OrderLog.objects.filter(order=order).values_list("pk", flat=True)) == [log.pk]
    # in one statement on PostgreSQL; a bulk insert per table in one transaction elsewhere
    statements = [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(CONTROL)]
    assert len(statements) == (1 if connection.vendor == "postgresql" else 4), statements


def test_when_one_row_is_refused_none_is_written(customer):
    # given an order whose second line breaks a constraint (a quantity of 0)
    products = [product_with_stock(5), product_with_stock(5)]
    payment, order, lines, log = _rows(customer, products, quantities=[1, 0])

    # when they are inserted together, then the database refuses, and keeps nothing
    with pytest.raises(IntegrityError):
        insert_together([payment], [order], lines, [log])
    assert not Order.objects.filter(uid=order.uid).exists()
    assert not Payment.objects.filter(order_id=order.uid).exists()
    assert not OrderLine.objects.exists() and not OrderLog.objects.exists()


def test_a_reference_to_a_row_not_inserted_before_is_refused(customer):
    # given a log entry naming an order that is not among the rows inserted before it
    order = Order(customer=customer, total=Decimal("1.00"))
    log = OrderLog(order_id=Inserted(order), event="created", to_status="pending")

    # when it is inserted, then it is refused before anything is written
    with pytest.raises(ValueError, match="not inserted before"):
        insert_together([log])
    assert not OrderLog.objects.exists()


def test_a_value_given_as_an_expression_goes_in_as_django_renders_it(customer):
    # given an order whose log entry's message is an SQL expression
    products = [product_with_stock(5)]
    payment, order, lines, log = _rows(customer, products, quantities=[3])
    log.message = Concat(Value("created with "), Value("an expression"))

    # when they are inserted together
    insert_together([payment], [order], lines, [log])

    # then the expression was evaluated by the database, the other rows went in as usual
    assert OrderLog.objects.get(pk=log.pk).message == "created with an expression"
    assert OrderLine.objects.get(order=order).quantity == 3


def test_a_row_named_by_others_must_be_inserted_in_a_group_alone(customer):
    # given: two orders inserted as one group, and a log entry naming the second
    first = Order(customer=customer, total=Decimal("1.00"))
    second = Order(customer=customer, total=Decimal("2.00"))
    payments = [Payment(order_id=o.uid, amount=o.total) for o in (first, second)]
    first.payment_id, second.payment_id = Inserted(payments[0]), Inserted(payments[1])
    log = OrderLog(order_id=Inserted(second), event="created", to_status="pending")

    # when they are inserted, then it is refused before anything is written: the key of a
    # row in a group of several cannot be told apart from its neighbours' in one statement
    with pytest.raises(ValueError, match="in a group alone"):
        insert_together([payments[0]], [payments[1]], [first, second], [log])
    assert not Order.objects.exists() and not Payment.objects.exists()
