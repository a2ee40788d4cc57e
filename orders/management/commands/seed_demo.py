"""Demo data for `make run`: an admin, a customer, their API tokens, categories and products.

Idempotent: running it again keeps existing rows and prints the same credentials.
"""

import json
from decimal import Decimal
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from rest_framework.authtoken.models import Token

from catalog.models import Category, Product
from inventory.services import stock_set_from_warehouse

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
            "--warehouse-stock-file",
            help="Also write the demo SKUs' stock as JSON for the simulated warehouse "
            "(WAREHOUSE_SIM_INITIAL_STOCK), so both start from the same numbers.",
        )
        parser.add_argument(
            "--banner-file",
            help="Also write the banner (URLs, logins, tokens, a first order) to this file, "
            "for `make run` to print again once everything is up.",
        )

    @transaction.atomic
    def handle(
        self,
        *args,
        port: str,
        admin_password: str,
        customer_password: str,
        warehouse_stock_file: str | None,
        banner_file: str | None = None,
        **options,
    ):
        users = get_user_model()
        admin, created = users.objects.get_or_create(
            username="admin",
            defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"},
        )
        if created:
            admin.set_password(admin_password)
            admin.save(update_fields=["password"])
        customer, created = users.objects.get_or_create(
            username="customer", defaults={"email": "customer@example.com"}
        )
        if created:
            customer.set_password(customer_password)
            customer.save(update_fields=["password"])
        admin_token, _ = Token.objects.get_or_create(user=admin)
        customer_token, _ = Token.objects.get_or_create(user=customer)

        products = []
        for sku, name, price, category_names, on_hand in DEMO_PRODUCTS:
            product, _ = Product.objects.get_or_create(
                sku=sku, defaults={"name": name, "price": price}
            )
            categories = [Category.objects.get_or_create(name=n)[0] for n in category_names]
            product.categories.add(*categories)
            # As if the warehouse had reported it (version 1); a later report wins.
            stock_set_from_warehouse(product_id=product.id, on_hand=on_hand, version=1)
            products.append(product)

        if warehouse_stock_file:
            Path(warehouse_stock_file).write_text(
                json.dumps([{"sku": sku, "on_hand": on_hand} for sku, *_, on_hand in DEMO_PRODUCTS])
            )

        base = f"http://127.0.0.1:{port}"
        shown_admin = admin_password if admin_password == "admin" else "(as given)"
        shown_customer = customer_password if customer_password == "customer" else "(as given)"
        banner = "\n".join(
            [
                "",
                "=" * 72,
                f"  Start:     {base}/            (links to everything below)",
                f"  API:       {base}/api/         docs: {base}/api/docs/",
                f"  Admin:     {base}/admin/       user admin / {shown_admin}",
                f"  Customer:  user customer / {shown_customer} (the API token below)",
                f"  Health:    {base}/api/health/",
                f"  Tokens:    customer  {customer_token.key}",
                f"             admin     {admin_token.key}",
                "  First order:",
                f"    curl -s -X POST {base}/api/orders/ \\",
                f"      -H 'Authorization: Token {customer_token.key}' \\",
                "      -H 'Content-Type: application/json' \\",
                f'      -d \'{{"items": [{{"product_id": {products[0].id}, "quantity": 1}}]}}\'',
                "=" * 72,
                "",
            ]
        )
        self.stdout.write(banner)
        if banner_file:
            Path(banner_file).write_text(banner + "\n")
