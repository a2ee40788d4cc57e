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
    """For a raw statement that changes stock rows: a CTE named `locked` (product_id) that
    locks them in ascending product id order, and its parameters; the statement must only
    change rows that are in `locked`. Every row it changes is then locked before the change,
    in that order, whatever plan runs it. ("", []) where the database has no row locks
    (SQLite: its writer lock already serializes whole transactions)."""
    if not connection.features.has_select_for_update:
        return "", []
    ids = sorted(set(product_ids))
    return (
        "locked AS MATERIALIZED (SELECT product_id FROM inventory_stocklevel "
        f"WHERE product_id IN ({', '.join(['%s'] * len(ids))}) "
        "ORDER BY product_id FOR NO KEY UPDATE)",
        ids,
    )
