"""Demo data for `make run` and docker compose's `seed` service: an admin, a customer, their
API tokens, categories and products, and those products in the warehouse.

Idempotent: running it again keeps existing rows (and passwords) and prints the same tokens.
"""

import json
import os
import secrets
import time
from decimal import Decimal
from pathlib import Path

import requests
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token

from catalog.models import Category, Product
from inventory.models import MovementReason
from inventory.services import stock_set_from_warehouse
from inventory.warehouse import WarehouseClient, WarehouseUnavailable
from webhooks.models import EventType, Subscription

# sku, name, price, categories, units on hand
DEMO_PRODUCTS = [
    ("KB-001", "Mechanical keyboard", Decimal("89.00"), ["Peripherals"], 120),
    ("MS-001", "Wireless mouse", Decimal("29.50"), ["Peripherals"], 300),
    ("MN-027", '27" monitor', Decimal("249.99"), ["Displays"], 40),
    ("CB-USBC", "USB-C cable, 2 m", Decimal("12.90"), ["Cables", "Peripherals"], 1000),
    ("HS-100", "Headset", Decimal("59.00"), ["Audio"], 75),
    ("DK-200", "Docking station", Decimal("179.00"), ["Peripherals"], 3),
]


class Command(BaseCommand):
    help = "Create the demo admin, customer, tokens and products (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--port", default="8000", help="Port the web server listens on.")
        parser.add_argument("--admin-password", default="admin")
        parser.add_argument("--customer-password", default="customer")
        parser.add_argument(
            "--generate-passwords",
            action="store_true",
            help="Give users created now random passwords (printed once) instead of the "
            "well-known demo ones: for a stack reachable from other machines.",
        )
        parser.add_argument(
            "--warehouse-stock-file",
            help="Also write the demo SKUs' stock as JSON for the simulated warehouse "
            "(WAREHOUSE_SIM_INITIAL_STOCK), so both start from the same numbers.",
        )
        parser.add_argument(
            "--warehouse-url",
            help="Also add the demo SKUs a running simulated warehouse lacks, over its "
            "control API (waits up to a minute for it to answer).",
        )
        parser.add_argument(
            "--webhook-url",
            help="Also subscribe this URL (the demo's webhook receiver) to every event, "
            "unless a subscription to it exists.",
        )
        parser.add_argument(
            "--webhook-secret-file",
            help="Also write that subscription's signing secret to this file, for the "
            "receiver to verify with (RECEIVER_SIM_SECRET).",
        )
        parser.add_argument(
            "--banner-file",
            help="Also write the banner (URLs, logins, tokens, a first order) to this file, "
            "for `make run` to print again once everything is up.",
        )

    def handle(
        self,
        *args,
        port: str,
        admin_password: str,
        customer_password: str,
        generate_passwords: bool = False,
        warehouse_stock_file: str | None = None,
        warehouse_url: str | None = None,
        webhook_url: str | None = None,
        webhook_secret_file: str | None = None,
        banner_file: str | None = None,
        **options,
    ):
        if generate_passwords:
            admin_password = customer_password = ""
        logins, tokens, first_product = self._seed(admin_password, customer_password)
        if webhook_url:
            subscription, created = Subscription.objects.get_or_create(
                url=webhook_url,
                defaults={
                    "event_types": EventType.values,
                    "description": "The demo's webhook receiver (simulated), every event.",
                },
            )
            if created:
                self.stdout.write(f"Subscribed {webhook_url} to every webhook event.")
            if webhook_secret_file:  # readable by its owner only, from the first byte
                fd = os.open(webhook_secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.fchmod(fd, 0o600)  # a file there already keeps its mode otherwise
                with os.fdopen(fd, "w") as secret_file:
                    secret_file.write(subscription.secret)
        stock = [{"sku": sku, "on_hand": on_hand} for sku, *_, on_hand in DEMO_PRODUCTS]
        if warehouse_stock_file:
            Path(warehouse_stock_file).write_text(json.dumps(stock))
        if warehouse_url:  # after the commit: no HTTP call inside a transaction
            added = _stock_the_warehouse(warehouse_url, stock)
            self.stdout.write(f"The warehouse at {warehouse_url} got {added} demo SKU(s).")

        banner = _banner(f"http://127.0.0.1:{port}", logins, tokens, first_product, webhook_url)
        self.stdout.write(banner)
        if banner_file:
            Path(banner_file).write_text(banner + "\n")

    @transaction.atomic
    def _seed(self, admin_password: str, customer_password: str):
        users = get_user_model()
        logins, tokens = {}, {}
        for username, password, staff in (
            ("admin", admin_password, True),
            ("customer", customer_password, False),
        ):
            user, created = users.objects.get_or_create(
                username=username,
                defaults={
                    "is_staff": staff,
                    "is_superuser": staff,
                    "email": f"{username}@example.com",
                },
            )
            if created:
                password = password or secrets.token_urlsafe(12)
                user.set_password(password)
                user.save(update_fields=["password"])
                logins[username] = password
            elif not password:
                logins[username] = "(as first seeded)"
            elif not user.check_password(password):  # kept: it was changed since
                logins[username] = "(changed since first seeded)"
            else:  # the well-known demo passwords are shown again; others are not repeated
                logins[username] = password if password == username else "(as given)"
            tokens[username] = Token.objects.get_or_create(user=user)[0].key

        products = []
        for sku, name, price, category_names, on_hand in DEMO_PRODUCTS:
            product, _ = Product.objects.get_or_create(
                sku=sku, defaults={"name": name, "price": price}
            )
            categories = [Category.objects.get_or_create(name=n)[0] for n in category_names]
            product.categories.add(*categories)
            # As if the warehouse had reported it (version 1); a later report wins.
            stock_set_from_warehouse(
                product_id=product.id,
                on_hand=on_hand,
                version=1,
                reason=MovementReason.OPERATOR,
                note="demo stock (seed_demo)",
            )
            products.append(product)
        return logins, tokens, products[0]


def _stock_the_warehouse(url: str, stock: list[dict], wait: float = 60) -> int:
    """Add the SKUs the warehouse does not know yet (known ones keep their stock); returns how
    many were added."""
    client = WarehouseClient(url, connect_timeout=2, read_timeout=10)
    deadline = time.monotonic() + wait
    while True:
        try:
            known, after = set(), None
            while True:
                page = client.stock_page(after=after, limit=1000)
                known |= {level.sku for level in page.levels}
                if not (after := page.next_after):
                    break
            break
        except WarehouseUnavailable as exc:
            if time.monotonic() > deadline:
                raise CommandError(f"The warehouse at {url} does not answer: {exc}") from exc
            time.sleep(1)  # starting
    missing = [item for item in stock if item["sku"] not in known]
    if missing:
        answer = requests.put(f"{url}/_control/stock", json={"items": missing}, timeout=10)
        if not answer.ok:
            raise CommandError(f"The warehouse refused the demo stock: {answer.text[:300]}")
    return len(missing)


def _banner(
    base: str,
    logins: dict[str, str],
    tokens: dict[str, str],
    product,
    webhook_url: str | None = None,
) -> str:
    receiver = None  # the demo receiver's record of deliveries, when this server serves it
    if webhook_url and webhook_url.startswith(base) and "/hooks/" in webhook_url:
        receiver = webhook_url.split("/hooks/")[0] + "/_control/received"
    return "\n".join(
        [
            "",
            "=" * 72,
            f"  Start:     {base}/            (links to everything below)",
            f"  API:       {base}/api/         docs: {base}/api/docs/",
            f"  Admin:     {base}/admin/       user admin / {logins['admin']}",
            f"  Customer:  user customer / {logins['customer']} (the API token below)",
            f"  Health:    {base}/api/health/",
            *([f"  Webhooks:  {receiver}   (what the demo receiver got)"] if receiver else []),
            f"  Tokens:    customer  {tokens['customer']}",
            f"             admin     {tokens['admin']}",
            "  First order:",
            f"    curl -s -X POST {base}/api/orders/ \\",
            f"      -H 'Authorization: Token {tokens['customer']}' \\",
            "      -H 'Content-Type: application/json' \\",
            f'      -d \'{{"items": [{{"product_id": {product.id}, "quantity": 1}}]}}\'',
            "=" * 72,
            "",
        ]
    )
