"""Check the invariants that must hold whatever failed: stock buckets equal what orders hold,
nothing negative, one capture per paid order, no capture kept by a failed or cancelled one."""

from django.core.management.base import BaseCommand, CommandError

from orders.audit import audit


class Command(BaseCommand):
    help = "Audit stock and payments; prints the violations and exits non-zero when there are any."

    def add_arguments(self, parser):
        parser.add_argument(
            "--with-provider",
            action="store_true",
            help="Also ask the payment service for every paid or failed order's charge.",
        )

    def handle(self, *args, with_provider: bool, **options):
        result = audit(with_provider=with_provider)
        self.stdout.write(
            f"audited {result.products} products, {result.orders} orders"
            f"{f', {result.provider_checks} charges at the provider' if with_provider else ''}"
        )
        for violation in result.violations:
            self.stdout.write(self.style.ERROR(f"  {violation}"))
        if result.violations:
            raise CommandError(f"{len(result.violations)} violation(s)")
        self.stdout.write(self.style.SUCCESS("clean: no violations"))
