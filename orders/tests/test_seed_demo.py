"""The demo data: what `make run` and docker compose's `seed` service start from. Against the
real database and the warehouse simulator over HTTP."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from orders.management.commands.seed_demo import DEMO_PRODUCTS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]


def seed(capsys, **options) -> str:
    call_command("seed_demo", **options)
    return capsys.readouterr().out


def test_it_gives_a_running_warehouse_the_demo_skus_it_lacks_and_keeps_the_ones_it_has(
    capsys, warehouse_sim
):
    # given: the warehouse already holds one of the demo SKUs, at a stock of its own
    warehouse_sim.set_stock({"KB-001": 7})

    # when
    out = seed(capsys, warehouse_url=warehouse_sim.url)

    # then: every other demo SKU is there with the demo's stock; the known one kept its own
    held = {sku: on_hand for sku, (on_hand, _version) in warehouse_sim.stock().items()}
    expected = {sku: on_hand for sku, *_, on_hand in DEMO_PRODUCTS}
    assert held == {**expected, "KB-001": 7}
    assert f"got {len(DEMO_PRODUCTS) - 1} demo SKU(s)" in out

    # and again: nothing to add
    assert "got 0 demo SKU(s)" in seed(capsys, warehouse_url=warehouse_sim.url)


def test_generated_passwords_are_printed_once_and_log_in(capsys):
    # when
    first = seed(capsys, generate_passwords=True)
    again = seed(capsys, generate_passwords=True)

    # then: random passwords that work, never the well-known ones, not repeated later
    admin = re.search(r"user admin / (\S+)", first).group(1)
    customer = re.search(r"user customer / (\S+)", first).group(1)
    users = get_user_model().objects
    assert users.get(username="admin").check_password(admin) and admin != "admin"
    assert users.get(username="customer").check_password(customer) and customer != "customer"
    assert "user admin / (as first seeded)" in again
    tokens = re.compile(r"Tokens:\s+customer\s+(\w+)")
    assert tokens.search(first).group(1) == tokens.search(again).group(1)


def test_the_demo_passwords_are_shown_on_every_run(capsys):
    seed(capsys)

    again = seed(capsys)

    assert "user admin / admin" in again and "user customer / customer" in again
    assert get_user_model().objects.get(username="admin").check_password("admin")


def test_a_password_changed_since_the_first_seed_is_not_shown_as_the_demo_one(capsys):
    seed(capsys)
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("something-else")
    admin.save()

    again = seed(capsys)

    assert "user admin / (changed since first seeded)" in again
    assert "user customer / customer" in again
