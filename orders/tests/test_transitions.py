"""The order state machine (orders/transitions.py) as the one way an order's status changes,
and the log as history only. Checked on the code itself (every transition the code asks for
is in the table; nothing else writes a status; nothing reads the log to decide), on sets of
orders moved in one statement, and on the plans PostgreSQL picks for the reconciler."""

import ast
import re
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from inventory.models import StockLevel
from inventory.tests.factories import product_with_stock
from orders.models import Order, OrderEvent, OrderStatus
from orders.reconciler import abandoned_payments_due, stuck_orders
from orders.tests.helpers import place_order
from orders.transitions import TRANSITIONS, IllegalTransition, order_transition

ROOT = Path(__file__).resolve().parents[2]
APPS = ["orders", "payments", "inventory", "catalog", "core", "orderproj"]
TABLE = {(t.event.name, t.source.name) for t in TRANSITIONS}
# The functions that apply a transition, and what their positional arguments are: the
# workflow's (_fail, _transition) and the people's (orders/interventions.py's _by).
POSITIONS = {
    "order_transition": (),
    "_fail": ("orders", "event", "source"),
    "_transition": ("orders", "event", "source"),
    "_by": ("actor", "order", "event", "source"),
}


def code_modules() -> list[Path]:
    return [
        path
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if not {"tests", "migrations"} & set(path.relative_to(ROOT).parts)
    ]


def member(node: ast.expr | None, enums: set[str]) -> str | None:
    """`E.X` / `OrderEvent.X` (or S / OrderStatus): the member's name."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.attr if node.value.id in enums else None
    return None


def transitions_asked_for() -> list[tuple[str, str, str]]:
    """(event, source, where) of every call that applies a transition with both named."""
    found = []
    for path in code_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name not in POSITIONS:
                continue
            kwargs = {k.arg: k.value for k in node.keywords}
            kwargs.update(zip(POSITIONS[name], node.args, strict=False))
            event = member(kwargs.get("event"), {"E", "OrderEvent"})
            source = member(kwargs.get("source"), {"S", "OrderStatus"})
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if event:  # a source read from the order: any of the event's rows may apply
                found.append((event, source or "*", where))
            else:  # a pass-through (event=event): its own callers are the ones checked
                assert path.name in {"interventions.py", "transitions.py", "workflow.py"}, where
    return found


def test_every_transition_the_code_applies_is_in_the_table():
    asked = transitions_asked_for()
    events = {event for event, _ in TABLE}

    assert [(e, s, w) for e, s, w in asked if (e, s) not in TABLE | {(e, "*")}] == []
    assert [(e, w) for e, s, w in asked if s == "*" and e not in events] == []
    # every row of the table is asked for somewhere (the table has no dead rows)
    pairs = {(e, s) for e, s, _ in asked}
    assert {(e, s) for e, s in TABLE if (e, s) not in pairs and (e, "*") not in pairs} == set()


def test_only_the_state_machine_writes_an_orders_status():
    """No `.update(status=...)` or `status = ...; save()` of orders outside transitions.py."""
    offenders = []
    for path in code_modules():
        if path.name == "transitions.py" and path.parent.name == "orders":
            continue
        text = path.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", "") == "update"
                and any(k.arg in {"status", "failure_reason"} for k in node.keywords)
                and "Order" in ast.unparse(node.func)
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        if "UPDATE orders_order SET status" in text:
            offenders.append(f"{path.relative_to(ROOT)}: raw UPDATE of status")
    assert offenders == []


# Modules that show an order's history to people, and the ones that write it.
LOG_READERS = {"orders/selectors.py", "orders/admin.py", "orders/api.py", "orders/metrics.py"}
LOG_WRITERS = {"orders/transitions.py", "orders/events.py", "orders/services.py"}


def test_nothing_reads_the_order_log_to_decide():
    log = re.compile(r"\bOrderLog\b|\.logs\.[a-z_]+\(|\blogs__")
    mentions = {
        str(path.relative_to(ROOT)) for path in code_modules() if log.search(path.read_text())
    }
    assert mentions - {"orders/models.py"} <= LOG_READERS | LOG_WRITERS
    for name in LOG_WRITERS:
        text = (ROOT / name).read_text()
        reads = [
            w
            for w in (".filter(", ".get(", ".aggregate(", ".exists(")
            if f"OrderLog.objects{w}" in text
        ]
        assert reads == [], name


@pytest.mark.django_db(transaction=True)
def test_a_set_of_orders_moves_in_one_statement_and_only_those_still_in_the_source_state(
    customer, django_assert_max_num_queries
):
    # given: three pending orders of one product, and one of them already reserved
    product = product_with_stock(10)
    orders = [place_order(customer, (product.id, 2)) for _ in range(3)]
    moved_first = order_transition(
        orders=orders[:1], event=OrderEvent.RESERVED, source=OrderStatus.PENDING
    )
    assert [o.pk for o in moved_first] == [orders[0].pk]

    # when: all three are reserved as a set, as the one decided for pending orders
    stale = [Order.objects.get(pk=o.pk) for o in orders]
    stale[0].status = OrderStatus.PENDING  # read before the first one moved
    with django_assert_max_num_queries(9):  # orders locked, lines, stock locked and updated,
        # its ledger rows, orders updated, log rows, BEGIN and COMMIT
        moved = order_transition(
            orders=stale, event=OrderEvent.RESERVED, source=OrderStatus.PENDING
        )

    # then: the two still pending moved; the stock of both is held; one log row each
    assert sorted(o.pk for o in moved) == sorted(o.pk for o in orders[1:])
    assert all(o.status == OrderStatus.RESERVED and o.reserved_at for o in moved)
    assert StockLevel.objects.get(product=product).reserved == 6
    for order in orders:
        assert order.logs.filter(event="reserved").count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.embedded
def test_a_reservation_of_a_set_gives_each_order_all_its_lines_or_none_first_come_first_served(
    customer,
):
    # given: 3 units of p1 and 2 of p2; A wants 2 + 1, B 1 of p1, C 5 of p2, D 1 of each
    p1, p2 = product_with_stock(3), product_with_stock(2)
    a = place_order(customer, (p1.id, 2), (p2.id, 1))
    b = place_order(customer, (p1.id, 1))
    c = place_order(customer, (p2.id, 5))
    d = place_order(customer, (p1.id, 1), (p2.id, 1))

    # when: all four are reserved as one set (listed in another order than they came)
    moved = order_transition(
        orders=[d, c, b, a], event=OrderEvent.RESERVED, source=OrderStatus.PENDING
    )

    # then: A and B (first come) fit, C is short of p2, D (last) finds p1 gone
    assert sorted(o.pk for o in moved) == [a.pk, b.pk]
    assert set(moved.short) == {c.pk, d.pk}
    assert [(x.product_id, x.requested, x.available) for x in moved.short[c.pk]] == [(p2.id, 5, 1)]
    assert [x.product_id for x in moved.short[d.pk]] == [p1.id]
    reserved = dict(StockLevel.objects.values_list("product_id", "reserved"))
    assert reserved == {p1.id: 3, p2.id: 1}
    statuses = dict(Order.objects.values_list("id", "status"))
    assert statuses == {a.pk: "reserved", b.pk: "reserved", c.pk: "pending", d.pk: "pending"}


@pytest.mark.django_db
def test_a_transition_not_in_the_table_raises(customer):
    order = place_order(customer, (product_with_stock(3).id, 1))

    for event, source in [
        (OrderEvent.CONFIRMED, OrderStatus.PENDING),
        (OrderEvent.RETRIED, OrderStatus.CANCELLED),
        (OrderEvent.REFUNDED, OrderStatus.FAILED),
    ]:
        with pytest.raises(IllegalTransition):
            order_transition(orders=[order], event=event, source=source)


@pytest.mark.django_db(transaction=True)
def test_the_reconcilers_queries_use_their_indexes_among_100000_orders(customer, settings):
    """EXPLAIN on 100,000 orders (a hundred of them open, the rest fulfilled): the stuck
    orders come from the partial index order_open_progress, the payments to settle from
    payment_abandoned_to_settle; neither scans the tables."""
    if connection.vendor != "postgresql":
        pytest.skip("the plans are PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO payments_payment (order_uid, idempotency_key, amount, currency, status,
                provider_reference, attempts, tries, last_error, created_at, updated_at)
            SELECT md5(g::text)::uuid, 'explain_' || g, 10, 'USD', 'captured', '', 1, 1, '',
                now(), now()
            FROM generate_series(1, 100000) AS g;
            INSERT INTO orders_order (uid, customer_id, status, failure_reason, total, currency,
                payment_id, created_at, updated_at, stock_attempts, ship_attempts, progressed_at,
                cancel_requested_via)
            SELECT p.order_uid, %s, CASE WHEN p.id %% 1000 = 0 THEN 'pending' ELSE 'fulfilled'
                END, '', 10, 'USD', p.id, now(), now(), 0, 0, now() - interval '1 hour', ''
            FROM payments_payment AS p;
            ANALYZE orders_order;
            ANALYZE payments_payment;
            """,
            [customer.pk],
        )
    now = timezone.now()

    orders_plan = stuck_orders(now=now).explain()
    payments_plan = abandoned_payments_due(now=now).explain()

    assert "order_open_progress" in orders_plan, orders_plan
    assert "Seq Scan on orders_order" not in orders_plan, orders_plan
    assert "payment_abandoned_to_settle" in payments_plan, payments_plan
    assert "Seq Scan on payments_payment" not in payments_plan, payments_plan
    assert len(stuck_orders(now=now)) == min(100, settings.RECONCILE_BATCH_SIZE)
    assert list(abandoned_payments_due(now=now)) == []
