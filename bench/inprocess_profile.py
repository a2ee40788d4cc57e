"""Where the CPU of one order goes, step by step, measured in one process with cProfile on the
thread's own CPU clock (time.thread_time), so a busy machine does not distort it:

    .venv/bin/python -m bench.inprocess_profile --orders 300

Each order is created through the API (Django test client with token auth: the whole
middleware and DRF stack, not gunicorn) and processed (orders_advance, a batch of one:
reserve, charge, confirm, push to the warehouse), exactly as the task calls it; the simulators
answer over HTTP from
a thread of this process (their CPU is not in the figures). Publishing to Celery is stubbed
(its cost shows in `make bench --profile`). Logging stays as configured (JSON, INFO), written to
a file. Uses its own database (BENCH_PROFILE_DATABASE_URL, default orderproj_bench_profile).
Prints, per step, the CPU per call and the functions with the most CPU (self and cumulative),
and writes them to bench-results/inprocess-profile.txt.
"""

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("api_create", "process_order")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--no-profile", action="store_true", help="only the CPU per step, without cProfile's cost"
    )
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "inprocess-profile.txt"))
    args = parser.parse_args(argv)

    from bench.orders import DEFAULT_SERVER, ensure_database

    server = os.environ.get("DATABASE_URL") or DEFAULT_SERVER
    url = os.environ.get(
        "BENCH_PROFILE_DATABASE_URL", server.rsplit("/", 1)[0] + "/orderproj_bench_profile"
    )
    ensure_database(url, fresh=False)
    var_dir = tempfile.mkdtemp(prefix="bench-profile-")
    from werkzeug.serving import make_server

    from simulators.wsgi import build_application

    sims = make_server("127.0.0.1", 0, build_application(var_dir), threaded=True)
    threading.Thread(target=sims.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{sims.server_port}/sim"
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "orderproj.settings",
            "DATABASE_URL": url,
            "CELERY_BROKER_URL": os.environ.get(
                "BENCH_PROFILE_BROKER_URL", "redis://127.0.0.1:6379/7"
            ),
            "SECRET_KEY": "bench-only-secret",
            "DEBUG": "false",
            "VAR_DIR": var_dir,
            "PAYMENT_API_URL": f"{base}/payments",
            "WAREHOUSE_API_URL": f"{base}/warehouse",
            "ORDER_CREATE_THROTTLE_RATE": "",
            "SERVE_SIMULATORS": "false",
        }
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from bench.scenarios import SCENARIOS, seed
    from orders.models import Order
    from orders.workflow import orders_advance

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench-customer")
    token = Token.objects.get_or_create(user=user)[0].key
    products = seed(
        SCENARIOS["spread"],
        on_hand=1_000_000,
        payment_url=f"{base}/payments",
        warehouse_url=f"{base}/warehouse",
    )
    low, high = (int(x) for x in products.split("-"))
    client = APIClient(HTTP_HOST="127.0.0.1")
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    profiles = {step: cProfile.Profile(timer=time.thread_time) for step in STEPS}
    cpu = dict.fromkeys(STEPS, 0.0)
    system = dict.fromkeys(STEPS, 0.0)

    @contextlib.contextmanager
    def measured(step: str):
        started = resource.getrusage(resource.RUSAGE_THREAD)
        if not args.no_profile:
            profiles[step].enable()
        try:
            yield
        finally:
            if not args.no_profile:
                profiles[step].disable()
            ended = resource.getrusage(resource.RUSAGE_THREAD)
            cpu[step] += ended.ru_utime - started.ru_utime + ended.ru_stime - started.ru_stime
            system[step] += ended.ru_stime - started.ru_stime

    log_path = Path(var_dir) / "app.log"
    with (
        log_path.open("w") as log,
        contextlib.redirect_stderr(log),
        mock.patch("orders.dispatch.publish", return_value=True),
    ):
        for logger in _stream_handlers():
            logger.setStream(log)
        for n in range(args.orders + 20):
            warm = n < 20  # first requests: imports, caches, connections
            product_id = low + n % (high - low + 1)
            with contextlib.nullcontext() if warm else measured("api_create"):
                response = client.post(
                    "/api/orders/",
                    {"items": [{"product_id": product_id, "quantity": 1}]},
                    format="json",
                )
            order_id = response.json()["id"]
            with contextlib.nullcontext() if warm else measured("process_order"):
                orders_advance([Order.objects.select_related("payment").get(pk=order_id)])
    sims.shutdown()

    report = io.StringIO()
    total = sum(cpu.values())
    profiled = "" if args.no_profile else ", inflated by cProfile"
    report.write(
        f"CPU per order (the thread's user + system time{profiled}, {args.orders} orders): "
        f"{1000 * total / args.orders:.2f} ms\n"
    )
    for step in STEPS:
        report.write(
            f"  {step}: {1000 * cpu[step] / args.orders:.2f} ms"
            f" (system {1000 * system[step] / args.orders:.2f} ms)\n"
        )
    for step in () if args.no_profile else STEPS:
        for key in ("tottime", "cumulative"):
            report.write(
                f"\n===== {step}: top {args.top} by {key} "
                f"(times are totals over {args.orders} calls)\n"
            )
            stats = pstats.Stats(profiles[step], stream=report)
            stats.sort_stats(key).print_stats(args.top)
    site = str(ROOT / ".venv" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}")
    text = report.getvalue().replace(site + "/site-packages/", "").replace(str(ROOT) + "/", "")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text[:4000])
    print(f"... full report in {args.out}")


def _stream_handlers():
    import logging

    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            yield handler


if __name__ == "__main__":
    main()
