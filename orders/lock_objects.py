"""Every row lock on orders goes through here: in ascending id order, always, so two
transactions locking overlapping sets of orders can never deadlock. An order's rows are
locked before any stock rows (inventory/lock_objects.py), never after."""

from collections.abc import Iterable

from django.db import connection

from orders.models import Order


def orders_for_update(order_ids: Iterable[int]) -> dict[int, tuple[str, int]]:
    """Lock the orders' rows (FOR NO KEY UPDATE: their lines and logs may still be inserted);
    must run inside a transaction. Returns each one's (status, payment id) as locked."""
    return {
        pk: (status, payment_id)
        for pk, status, payment_id in Order.objects.select_for_update(no_key=True)
        .filter(pk__in=sorted(set(order_ids)))
        .order_by("pk")
        .values_list("pk", "status", "payment_id")
    }


def orders_lock_cte(order_ids: Iterable[int]) -> tuple[str, list[int]]:
    """For a raw statement that changes order rows: the CTE `locked(locked_id)`, which locks
    them in ascending id order, and its parameters. The statement joins the rows it changes to
    `locked` (UPDATE ... FROM locked WHERE id = locked_id), so one statement both locks in
    order and changes them (as inventory.lock_objects.stock_lock_cte does for stock); the
    column's own name keeps the row's `id` unambiguous, so RETURNING may name it unqualified,
    as SQLite requires. On SQLite (no row locks) the CTE only reads."""
    ids = sorted(set(order_ids))
    lock = " FOR NO KEY UPDATE" if connection.features.has_select_for_update else ""
    return (
        "locked(locked_id) AS MATERIALIZED (SELECT id FROM orders_order "
        f"WHERE id IN ({', '.join(['%s'] * len(ids))}) ORDER BY id{lock})",
        ids,
    )
