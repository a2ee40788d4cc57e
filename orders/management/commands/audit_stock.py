"""Check the invariants that must hold whatever failed: stock buckets equal what orders hold,
nothing negative, one capture per paid order, no capture kept by a failed or cancelled order
or by a payment a retry replaced; with --with-provider, every charge as the payment service
holds it and every shipment as the warehouse holds it."""

from django.core.management.base import BaseCommand, CommandError

from orders.audit import audit


class Command(BaseCommand):
    help = "Audit stock and payments; prints the violations and exits non-zero when there are any."

    def add_arguments(self, parser):
        parser.add_argument(
            "--with-provider",
            action="store_true",
            help="Also ask the payment service for every charge ever requested (payments in "
            "doubt and replaced ones included), and the warehouse for every shipment.",
        )

    def handle(self, *args, with_provider: bool, **options):
        result = audit(with_provider=with_provider)
        checked = (
            f", {result.provider_checks} charges at the provider, "
            f"{result.warehouse_shipments} shipments at the warehouse"
            if with_provider
            else ""
        )
        self.stdout.write(
            f"audited {result.products} products, {result.orders} orders{checked}; "
            f"{result.in_doubt} payment(s) still in doubt"
        )
        for violation in result.violations:
            self.stdout.write(self.style.ERROR(f"  {violation}"))
        if result.violations:
            raise CommandError(f"{len(result.violations)} violation(s)")
        self.stdout.write(self.style.SUCCESS("clean: no violations"))
