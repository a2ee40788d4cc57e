"""Every row lock on stock goes through here: rows are locked in ascending product id order,
always, so two transactions locking overlapping products can never deadlock."""

from collections.abc import Iterable

from django.db import connection
from django.db.models import QuerySet

from inventory.models import StockLevel


def stock_levels_for_update(product_ids: Iterable[int]) -> QuerySet[StockLevel]:
    """Must be evaluated inside a transaction; locks in ascending product id order."""
    return (
        StockLevel.objects.select_for_update(of=("self",), no_key=True)
        .filter(product_id__in=sorted(set(product_ids)))
        .order_by("product_id")
    )


def stock_lock_cte(product_ids: Iterable[int]) -> tuple[str, list[int]]:
    """For a raw statement that changes stock rows: the CTE `locked(id, was_available,
    was_reserved, was_committed)`, which locks the rows in ascending product id order and
    gives each one's buckets as they are once locked (before the statement changes them; the
    names differ from the row's own, so that RETURNING may name those unqualified, as SQLite
    requires), and its parameters.

    The statement must join each row it changes to `locked` and judge it by `locked`'s
    values: PostgreSQL then takes every lock through the CTE, in that order, whatever the
    plan (a row is reached only through a lower id's lock), and never judges a row by the
    older version its snapshot holds while it waited. SQLite takes no row locks (its writer
    lock serializes whole transactions), so there the CTE only reads.
    """
    ids = sorted(set(product_ids))
    lock = " FOR NO KEY UPDATE" if connection.features.has_select_for_update else ""
    return (
        "locked(id, was_available, was_reserved, was_committed) AS MATERIALIZED ("
        "SELECT product_id, available, reserved, committed FROM inventory_stocklevel "
        f"WHERE product_id IN ({', '.join(['%s'] * len(ids))}) ORDER BY product_id{lock})",
        ids,
    )
