"""The stock ledger as the warehouse and operators write it, and audit's check of it."""

import pytest
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from catalog.tests.factories import ProductFactory
from inventory.models import StockLevel, StockMovement
from inventory.selectors import stock_ledger_discrepancies
from inventory.services import stock_release, stock_reserve, stock_set_from_warehouse
from inventory.sync import warehouse_sync
from inventory.tests.factories import product_in_warehouse, product_with_stock

pytestmark = pytest.mark.django_db(transaction=True)


def movements(product) -> list[tuple]:
    return list(
        StockMovement.objects.filter(product=product)
        .order_by("id")
        .values_list("reason", "on_hand_change", "on_hand_after", "sync_run", "order_id")
    )


@pytest.mark.embedded
def test_a_sync_records_each_level_it_changes_and_each_row_it_creates_under_its_run(
    warehouse_sim,
):
    # given: one product restocked at the warehouse, one unchanged, one without a stock row
    restocked, unchanged = (
        product_in_warehouse(warehouse_sim, 5),
        product_in_warehouse(warehouse_sim, 5),
    )
    new = ProductFactory()
    warehouse_sim.set_stock({restocked.sku: 12, new.sku: 4})

    # when
    run = warehouse_sync(trigger="test")

    # then: one movement for each change, referring to the run; none for the unchanged
    assert movements(restocked) == [
        ("opening", 5, 5, None, None),
        ("warehouse_sync", 7, 12, run.pk, None),
    ]
    assert movements(new) == [("warehouse_sync", 4, 4, run.pk, None)]
    assert movements(unchanged) == [("opening", 5, 5, None, None)]
    # a repeat changes nothing, so it records nothing
    warehouse_sync(trigger="test")
    assert StockMovement.objects.filter(reason="warehouse_sync").count() == 2


@pytest.mark.embedded
def test_levels_set_by_an_operator_are_recorded_with_who_and_why(staff_user):
    product = ProductFactory()

    assert stock_set_from_warehouse(
        product_id=product.pk,
        on_hand=8,
        version=1,
        reason="operator",
        actor_id=staff_user.pk,
        note="counted by hand",
    )
    # an older version does not apply, and is not recorded
    assert not stock_set_from_warehouse(product_id=product.pk, on_hand=3, version=1)

    (row,) = StockMovement.objects.filter(product=product)
    assert (row.reason, row.on_hand_change, row.on_hand_after, row.actor, row.note) == (
        "operator",
        8,
        8,
        staff_user,
        "counted by hand",
    )


@pytest.mark.embedded
def test_a_reservation_that_does_not_fit_records_nothing():
    plenty, scarce = product_with_stock(10), product_with_stock(1)

    with transaction.atomic():
        assert stock_reserve(orders={7: {plenty.pk: 3, scarce.pk: 2}}).reserved == []

    assert StockMovement.objects.exclude(reason="opening").count() == 0
    assert stock_ledger_discrepancies() == []


def explained_product():
    """A product whose ledger explains it: 10 on hand, 4 reserved then 1 released."""
    product = product_with_stock(10)
    with transaction.atomic():
        stock_reserve(orders={7: {product.pk: 4}})
    with transaction.atomic():
        stock_release(orders={7: {product.pk: 1}})
    assert stock_ledger_discrepancies() == []
    return product


def test_a_level_changed_past_the_application_is_recorded_as_a_change_from_outside():
    # given
    product = explained_product()

    # when: a bucket is changed by hand in the database, past the services (or by a worker
    # of a release before the ledger), and a stock row is inserted so (PostgreSQL's check at
    # commit; the embedded SQLite has none)
    StockLevel.objects.filter(product=product).update(reserved=5)
    other = ProductFactory()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO inventory_stocklevel (product_id, on_hand, version, reserved, committed,"
            " updated_at) VALUES (%s, 6, 1, 0, 0, %s)",
            [other.pk, connection.ops.adapt_datetimefield_value(timezone.now())],
        )

    # then: the database recorded both in the ledger, which still adds up
    change = StockMovement.objects.filter(product=product).latest("id")
    assert (change.reason, change.reserved_change, change.reserved_after) == ("outside", 2, 5)
    opening = StockMovement.objects.get(product=other)
    assert (opening.reason, opening.on_hand_change, opening.on_hand_after) == ("opening", 6, 6)
    assert stock_ledger_discrepancies() == []


@pytest.mark.embedded
def test_a_movement_missing_from_the_ledger_is_a_discrepancy():
    # given
    product = explained_product()

    # when: its last movement is lost
    StockMovement.objects.filter(product=product).latest("id").delete()

    # then
    assert stock_ledger_discrepancies() == [
        f"product {product.pk}: its movements add up to reserved 4, the level is 3"
    ]


def test_the_ledger_opens_with_the_levels_every_stock_row_had_before_it():
    executor = MigrationExecutor(connection)
    before = [("inventory", "0004_sync_rejected_rows_and_cursor")]
    latest = executor.loader.graph.leaf_nodes()
    try:
        # given: the schema before the ledger, with a stock row holding units
        executor.migrate(before)
        old = executor.loader.project_state(before).apps
        product = old.get_model("catalog", "Product").objects.create(
            sku="OLD-1", name="Old", price="1.00"
        )
        old.get_model("inventory", "StockLevel").objects.create(
            product_id=product.pk, on_hand=9, reserved=2, committed=3, version=4
        )

        # when: the ledger arrives
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    finally:
        MigrationExecutor(connection).migrate(latest)

    # then: its opening balance is the row's levels
    row = StockMovement.objects.get(product_id=product.pk)
    assert (row.reason, row.on_hand_change, row.reserved_change, row.committed_change) == (
        "opening",
        9,
        2,
        3,
    )
    assert (row.on_hand_after, row.reserved_after, row.committed_after) == (9, 2, 3)
    assert stock_ledger_discrepancies() == []
