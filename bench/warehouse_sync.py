"""Benchmark: a full warehouse sync of N SKUs (default 100,000) against PostgreSQL, end to
end: the warehouse simulator under gunicorn, every page over HTTP, compare-and-set batches.

    make bench-sync            # or: .venv/bin/python -m bench.warehouse_sync --skus 100000

Uses its own database (BENCH_DATABASE_URL, default orderproj_bench), created if missing.
Writes bench-results/warehouse-sync.json.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.orders import ensure_database
from bench.stack import ROOT, wait_until

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/orderproj_bench"


def start_simulators(var_dir: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "VAR_DIR": var_dir}
    proc = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "simulators.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--worker-class",
            "gthread",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    health = f"http://127.0.0.1:{port}/sim/warehouse/health"
    try:
        wait_until(lambda: requests.get(health, timeout=1).ok, timeout=30, what="the simulators")
    except RuntimeError:
        proc.kill()
        raise SystemExit("the simulators did not start") from None
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "warehouse-sync.json"))
    args = parser.parse_args()

    database_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    ensure_database(database_url, fresh=False)
    var_dir = tempfile.mkdtemp(prefix="bench-sync-")
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "SECRET_KEY": "bench",
            "VAR_DIR": var_dir,
            "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/5"),
            "WAREHOUSE_API_URL": f"http://127.0.0.1:{args.port}/sim/warehouse",
            "PAYMENT_API_URL": f"http://127.0.0.1:{args.port}/sim/payments",
            "DJANGO_SETTINGS_MODULE": "orderproj.settings",
        }
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from catalog.models import Product
    from inventory.models import StockLevel
    from inventory.services import stock_open
    from inventory.sync import warehouse_sync

    call_command("migrate", verbosity=0)
    simulators = start_simulators(var_dir, args.port)
    try:
        print(f"seeding {args.skus:,} products, stock rows and warehouse SKUs ...")
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE catalog_product, inventory_stocklevel, inventory_stockmovement, "
                "catalog_productcategory, inventory_warehousesyncrun CASCADE"
            )
        skus = [f"BENCH-{i:07d}" for i in range(args.skus)]
        Product.objects.bulk_create(
            [Product(sku=sku, name=sku, price="1.00") for sku in skus], batch_size=10_000
        )
        stock_open(
            on_hand=dict.fromkeys(Product.objects.values_list("id", flat=True), 10),
            note="benchmark",
        )
        warehouse = os.environ["WAREHOUSE_API_URL"]
        for on_hand in (10, 11):  # version 1, then version 2 for every SKU: all newer than ours
            requests.put(
                f"{warehouse}/_control/stock",
                timeout=120,
                json={"items": [{"sku": s, "on_hand": on_hand} for s in skus]},
            ).raise_for_status()

        started = time.perf_counter()
        run = warehouse_sync(trigger="bench")
        full = time.perf_counter() - started
        started = time.perf_counter()
        again = warehouse_sync(trigger="bench")
        stale = time.perf_counter() - started
    finally:
        simulators.terminate()
        simulators.wait(timeout=10)

    assert run.status == "succeeded" and run.applied == args.skus, run.error
    assert again.status == "succeeded" and again.stale_skipped == args.skus
    assert StockLevel.objects.filter(on_hand=11, version=2).count() == args.skus
    result = {
        "skus": args.skus,
        "pages": run.pages,
        "full_sync_seconds": round(full, 2),
        "skus_per_second": round(args.skus / full),
        "all_stale_sync_seconds": round(stale, 2),
        "target_seconds": 30,
        "within_target": full <= 30,
    }
    Path(args.out).parent.mkdir(exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not result["within_target"]:
        raise SystemExit(f"full sync took {full:.1f}s, over the 30 s target")


if __name__ == "__main__":
    main()
