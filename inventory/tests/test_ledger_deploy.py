"""The stock ledger across a rolling deploy: workers of the release before the ledger keep
changing stock while, and after, the ledger's migrations run, without writing movements;
the ledger still adds up to the levels, on PostgreSQL where such workers run side by side."""

import threading

import psycopg
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from inventory.selectors import stock_ledger_discrepancies
from orders.tests.conftest import Background
from tests.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_THE_LEDGER = [("inventory", "0004_sync_rejected_rows_and_cursor")]


class PreviousRelease:
    """A worker of the release before the ledger: its own connection, changing stock rows as
    that code did (a guarded UPDATE, no movement written)."""

    def __init__(self):
        info = connection.settings_dict
        self.conn = psycopg.connect(
            dbname=info["NAME"],
            user=info.get("USER") or "postgres",
            host=info.get("HOST") or "127.0.0.1",
            port=info.get("PORT") or 5432,
            password=info.get("PASSWORD") or None,
        )

    def reserve(self, product_id: int, units: int) -> None:
        """In an open transaction (the row stays locked until commit)."""
        self.conn.execute(
            "UPDATE inventory_stocklevel SET reserved = reserved + %s WHERE product_id = %s",
            (units, product_id),
        )

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def migrating_waits_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def test_workers_of_the_release_before_the_ledger_leave_a_ledger_that_adds_up():
    if connection.vendor != "postgresql":
        pytest.skip("two releases side by side run on PostgreSQL")
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    old_worker = None
    try:
        # given: the schema before the ledger, with a stock row holding units
        executor.migrate(BEFORE_THE_LEDGER)
        old = executor.loader.project_state(BEFORE_THE_LEDGER).apps
        product = old.get_model("catalog", "Product").objects.create(
            sku="OLD-1", name="Old", price="1.00"
        )
        old.get_model("inventory", "StockLevel").objects.create(
            product_id=product.pk, on_hand=9, reserved=2, committed=3, version=4
        )

        # when: a worker of the previous release is reserving units of it (uncommitted)
        # while the new release's migrations run ...
        old_worker = PreviousRelease()
        old_worker.reserve(product.pk, 2)
        done = threading.Event()

        def migrate() -> None:
            MigrationExecutor(connection).migrate(latest)
            done.set()

        migrating = Background(migrate)
        wait_for(
            lambda: done.is_set() or migrating_waits_on_a_lock(),
            timeout=30,
            interval=0.05,
            message="the migrations to finish or wait on the old worker",
        )
        old_worker.commit()
        migrating.result()
        # ... and it goes on changing stock afterwards, until it is replaced
        old_worker.reserve(product.pk, 1)
        old_worker.commit()
    finally:
        if old_worker is not None:
            old_worker.close()
        MigrationExecutor(connection).migrate(latest)

    # then: the ledger adds up to the levels
    assert stock_ledger_discrepancies() == []
