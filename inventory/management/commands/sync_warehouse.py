import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from inventory.models import SyncStatus
from inventory.sync import warehouse_sync


class Command(BaseCommand):
    help = "Run one warehouse stock sync now, with a progress bar and a summary."

    def handle(self, *args, **options):
        # The bar shows on a terminal; piped output gets only the summary.
        bar = tqdm(desc="warehouse sync", unit=" SKUs", file=sys.stderr, disable=None)

        def on_page(run) -> None:
            bar.update(run.rows_seen - bar.n)
            bar.set_postfix(pages=run.pages, applied=run.applied, stale=run.stale_skipped)

        run = warehouse_sync(trigger="command", on_page=on_page)
        bar.close()
        self.stdout.write(
            f"sync run {run.pk}: {run.status} in {run.duration_seconds:.2f}s — "
            f"{run.pages} pages, {run.rows_seen} rows seen, {run.applied} applied, "
            f"{run.stale_skipped} stale skipped, {run.unknown_skus} unknown SKUs, "
            f"{run.oversold} oversold"
        )
        if run.oversold:
            sample = ", ".join(
                f"{sku} ({available})" for sku, available in run.details.get("oversold", [])
            )
            self.stdout.write(self.style.WARNING(f"held beyond the warehouse's stock: {sample}"))
        if run.status == SyncStatus.SKIPPED:
            self.stdout.write(self.style.WARNING(run.error))
        elif run.status == SyncStatus.FAILED:
            raise CommandError(f"sync failed: {run.error}")
