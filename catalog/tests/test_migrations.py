"""The categories migration only adds: products written before it are untouched, the
products API answers the same after it, and it reverses and re-applies cleanly."""

import io
import re
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.test import APIClient

BEFORE = ("catalog", "0001_initial")
CATEGORIES = ("catalog", "0002_categories")
NEW_TABLES = ("catalog_category", "catalog_productcategory")


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def leaf_nodes():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def table_names() -> set[str]:
    return set(connection.introspection.table_names())


def product_rows(apps) -> list[dict]:
    model = apps.get_model("catalog", "Product")
    return list(model.objects.order_by("id").values())


@pytest.mark.django_db(transaction=True)
def test_categories_migration_leaves_products_and_api_untouched():
    # given: the schema as it was before categories, with products written by that code
    old_apps = migrate([BEFORE])
    assert not table_names() & set(NEW_TABLES)
    OldProduct = old_apps.get_model("catalog", "Product")
    OldProduct.objects.create(sku="OLD-1", name="Kettle", price=Decimal("24.90"))
    OldProduct.objects.create(
        sku="OLD-2",
        name="Toaster",
        price=Decimal("39.00"),
        description="Two slots",
        is_active=False,
    )
    before = product_rows(old_apps)

    # when: the categories migration (and everything after it) is applied
    new_apps = migrate(leaf_nodes())

    # then: the two tables exist, the product rows are byte-for-byte the same
    assert set(NEW_TABLES) <= table_names()
    assert product_rows(new_apps) == before
    # the code written before categories still works against the new schema
    OldProduct.objects.create(sku="OLD-3", name="Written by old code", price=Decimal("1.00"))
    # and the products API answers for them as before, with no categories yet
    answer = APIClient().get("/api/products/", {"page_size": 10}).json()["results"]
    by_sku = {p["sku"]: p for p in answer}
    assert set(by_sku) == {"OLD-1", "OLD-2", "OLD-3"}
    for row in before:
        shown = by_sku[row["sku"]]
        assert (
            shown["name"],
            Decimal(shown["price"]),
            shown["description"],
            shown["is_active"],
        ) == (row["name"], row["price"], row["description"], row["is_active"])
        assert shown["categories"] == []

    # when: migrated back and forward again
    back_apps = migrate([BEFORE])
    assert not table_names() & set(NEW_TABLES)
    after_back = product_rows(back_apps)
    migrate(leaf_nodes())

    # then: nothing was lost either way
    assert [r["sku"] for r in after_back] == ["OLD-1", "OLD-2", "OLD-3"]
    assert product_rows(new_apps)[:2] == before


@pytest.mark.django_db
def test_sqlmigrate_of_categories_only_creates_the_two_tables():
    out = io.StringIO()
    call_command("sqlmigrate", *CATEGORIES, stdout=out)
    statements = [
        line.strip()
        for line in out.getvalue().splitlines()
        if line.strip() and not line.startswith("--") and line.strip() not in ("BEGIN;", "COMMIT;")
    ]

    allowed = re.compile(
        r'^(CREATE TABLE "(?P<t1>\w+)"'
        r'|CREATE (UNIQUE )?INDEX "\w+" ON "(?P<t2>\w+)"'
        r'|ALTER TABLE "(?P<t3>\w+)" ADD CONSTRAINT "\w+" (FOREIGN KEY|UNIQUE|CHECK))'
    )
    created = set()
    for statement in statements:
        match = allowed.match(statement)
        assert match, f"unexpected statement in an additive migration: {statement}"
        table = match.group("t1") or match.group("t2") or match.group("t3")
        assert table in NEW_TABLES, f"touches an existing table: {statement}"
        if match.group("t1"):
            created.add(table)
    assert created == set(NEW_TABLES)
    assert not any(re.search(r'ALTER TABLE "catalog_product"\s', s) for s in statements)
