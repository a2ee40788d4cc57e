import threading

import pytest
from django.db import IntegrityError, connection, connections, transaction

from inventory.models import StockLevel
from inventory.services import (
    StockInvariantViolation,
    stock_confirm,
    stock_release,
    stock_reserve,
    stock_set_from_warehouse,
)
from inventory.tests.factories import StockLevelFactory
from tests.processes import wait_for

pytestmark = pytest.mark.django_db

ORDER = 1  # the order the stock is moved for (the ledger refers to it)


def levels(*levels_):
    return [StockLevel.objects.get(pk=lvl.pk) for lvl in levels_]


def waiting_on_locks() -> int:
    """Statements of this database's sessions waiting on a lock now."""
    with connection.cursor() as cursor:
        # (within a transaction, pg_stat_activity is read from a snapshot)
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def test_reserve_takes_every_line_or_none():
    # given
    plenty, scarce = StockLevelFactory(on_hand=10), StockLevelFactory(on_hand=1)

    # when: one line cannot be served
    with transaction.atomic():
        allocation = stock_reserve(orders={ORDER: {plenty.product_id: 3, scarce.product_id: 2}})

    # then: nothing was reserved, and the allocation names the short line
    assert allocation.reserved == []
    assert [lvl.reserved for lvl in levels(plenty, scarce)] == [0, 0]
    assert [s.as_dict() for s in allocation.short[ORDER]] == [
        {"product_id": scarce.product_id, "requested": 2, "available": 1}
    ]


def test_reserve_serves_orders_first_come_first_served_each_all_or_nothing():
    # given: 3 units, and three orders of 2, 2 and 1 in that order
    level = StockLevelFactory(on_hand=3)

    # when
    with transaction.atomic():
        allocation = stock_reserve(
            orders={1: {level.product_id: 2}, 2: {level.product_id: 2}, 3: {level.product_id: 1}}
        )

    # then: the first and the third got theirs; the second, which no longer fit, nothing
    assert allocation.reserved == [1, 3]
    assert list(allocation.short) == [2]
    assert levels(level)[0].reserved == 3


def test_reserve_confirm_release_move_units_between_buckets():
    level = StockLevelFactory(on_hand=10)
    with transaction.atomic():
        stock_reserve(orders={ORDER: {level.product_id: 4}})
    with transaction.atomic():
        stock_confirm(orders={ORDER: {level.product_id: 3}})
    with transaction.atomic():
        stock_release(orders={ORDER: {level.product_id: 1}})

    (level,) = levels(level)
    assert (level.on_hand, level.reserved, level.committed, level.available) == (10, 0, 3, 7)


@pytest.mark.django_db(transaction=True)
def test_units_released_while_a_reservation_waits_for_the_row_are_reserved():
    # given: the last unit is held, and its release is under way (row locked, not committed)
    level = StockLevelFactory(on_hand=1, reserved=1)
    outcome = {}

    def reserve() -> None:
        try:
            with transaction.atomic():
                allocation = stock_reserve(orders={ORDER: {level.product_id: 1}})
            if allocation.short:
                outcome["shortages"] = [s.as_dict() for s in allocation.short[ORDER]]
            else:
                outcome["reserved"] = True
        finally:
            connections.close_all()

    waiter = threading.Thread(target=reserve)
    with transaction.atomic():
        stock_release(orders={ORDER: {level.product_id: 1}})
        # when: a reservation starts now (its statement sees the unit held) and waits
        waiter.start()

        wait_for(lambda: waiting_on_locks() == 1, timeout=10, message="the reservation to wait")
    # ... and the release commits
    waiter.join(timeout=10)

    # then: it reserved the released unit, not a false shortage
    assert outcome == {"reserved": True}
    (level,) = levels(level)
    assert (level.reserved, level.available) == (1, 0)


def test_a_product_without_a_stock_row_has_nothing_available(db):
    from catalog.tests.factories import ProductFactory

    product = ProductFactory()
    with transaction.atomic():
        allocation = stock_reserve(orders={ORDER: {product.id: 1}})
    assert [s.as_dict() for s in allocation.short[ORDER]] == [
        {"product_id": product.id, "requested": 1, "available": 0}
    ]


def test_releasing_more_than_reserved_is_refused():
    level = StockLevelFactory(on_hand=10, reserved=1)
    with pytest.raises(StockInvariantViolation), transaction.atomic():
        stock_release(orders={ORDER: {level.product_id: 2}})
    assert levels(level)[0].reserved == 1


@pytest.mark.django_db(transaction=True)
def test_transitions_refuse_to_run_outside_a_transaction():
    level = StockLevelFactory(on_hand=10)
    with pytest.raises(RuntimeError):
        stock_reserve(orders={ORDER: {level.product_id: 1}})


def test_database_refuses_negative_buckets():
    level = StockLevelFactory(on_hand=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        StockLevel.objects.filter(pk=level.pk).update(reserved=-1)


def test_warehouse_level_applies_only_when_newer():
    level = StockLevelFactory(on_hand=5, version=3)

    assert stock_set_from_warehouse(product_id=level.product_id, on_hand=9, version=2) is False
    assert stock_set_from_warehouse(product_id=level.product_id, on_hand=9, version=3) is False
    assert levels(level)[0].on_hand == 5
    assert stock_set_from_warehouse(product_id=level.product_id, on_hand=9, version=4) is True
    assert (levels(level)[0].on_hand, levels(level)[0].version) == (9, 4)


@pytest.mark.django_db(transaction=True)
def test_two_reservations_listing_their_lines_in_opposite_orders_never_deadlock():
    """Each reservation names its products in the opposite order to the other's. A third
    transaction holds the second product's row until both reservations wait on locks: had
    each locked its rows in the order it lists them, the first would hold one row and want
    the other's; locked in ascending product id, both go through."""
    first, second = StockLevelFactory(on_hand=5), StockLevelFactory(on_hand=5)
    assert first.product_id < second.product_id
    errors: list[BaseException] = []

    def reserve(quantities: dict[int, int]) -> threading.Thread:
        def run() -> None:
            try:
                with transaction.atomic():
                    stock_reserve(orders={ORDER: quantities})
            except BaseException as exc:  # a deadlock included: reported below
                errors.append(exc)
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    # given: the second product's row held by another transaction
    with transaction.atomic():
        list(StockLevel.objects.select_for_update().filter(pk=second.pk))
        # when: the two reservations start, one after the other, and both stand waiting
        threads = [reserve({second.product_id: 1, first.product_id: 1})]
        wait_for(lambda: waiting_on_locks() == 1, timeout=10, message="the first to wait")
        threads.append(reserve({first.product_id: 1, second.product_id: 1}))
        wait_for(lambda: waiting_on_locks() == 2, timeout=10, message="both to wait on locks")
    # ... then the row is let go
    for thread in threads:
        thread.join(timeout=30)

    # then: no deadlock; both reserved
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert [lvl.reserved for lvl in levels(first, second)] == [2, 2]
