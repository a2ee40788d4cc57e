"""The order benchmark's scenarios: seeding, waiting for the orders to end, the invariants, and
the figures of one phase. Runs in the driver process, with Django set up on the bench database
(bench/orders.py does that before importing this module)."""

import math
import time
from collections import defaultdict
from dataclasses import dataclass

import requests
from django.db import InterfaceError, OperationalError, connection
from django.db.models import Count, Sum
from tqdm import tqdm

from catalog.models import Product
from inventory.models import StockLevel
from inventory.services import stock_open
from orders.audit import PAID, UNPAID_ENDS, audit
from orders.models import FINAL_STATUSES, Order, OrderLine, OrderStatus

PRICE = "10.00"
AMPLE = 1_000_000


@dataclass(frozen=True)
class Scenario:
    name: str
    skus: int
    payment_latency_ms: int = 0
    stock_fraction: float | None = None  # stock of each SKU = this x orders (flash sale)

    def on_hand(self, orders: int) -> int:
        if self.stock_fraction is None:
            return AMPLE
        return max(1, math.floor(orders * self.stock_fraction))


SCENARIOS = {
    "spread": Scenario("spread", skus=1000),
    "hot": Scenario("hot", skus=1, stock_fraction=0.5),
    "slow-payments": Scenario("slow-payments", skus=1000, payment_latency_ms=100),
}

# Every table an order run writes; TRUNCATE ... CASCADE also takes whatever refers to them.
TABLES = [
    "webhooks_attempt",
    "webhooks_delivery",
    "webhooks_event",
    "webhooks_subscription",
    "orders_orderlog",
    "orders_orderline",
    "orders_idempotencykey",
    "orders_order",
    "payments_payment",
    "inventory_stockmovement",
    "inventory_stocklevel",
    "catalog_productcategory",
    "catalog_product",
]


def resilient(call, *args, timeout: float = 120, **kwargs):
    """Call, retrying on a lost database connection for up to `timeout` seconds: others may
    restart the machine's PostgreSQL (the fault-injection suite does), and the stack rides it
    out (tasks retry database errors), so the driver must too."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call(*args, **kwargs)
        except (OperationalError, InterfaceError):
            connection.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def postmaster_started() -> str:
    """When PostgreSQL last started: a run it changed during was disturbed."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_postmaster_start_time()::text")
        return cursor.fetchone()[0]


def seed(scenario: Scenario, *, on_hand: int, payment_url: str, warehouse_url: str) -> str:
    """Empty tables and simulators, then the scenario's products with `on_hand` units each,
    the same at the warehouse (version 1 on both sides). Returns the product ids ("1-1000")."""
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '20s'")
        cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        cursor.execute("SET lock_timeout = 0")
    skus = [f"BENCH-{scenario.name.upper()}-{i:05d}" for i in range(scenario.skus)]
    Product.objects.bulk_create([Product(sku=sku, name=sku, price=PRICE) for sku in skus])
    ids = list(Product.objects.order_by("id").values_list("id", flat=True))
    stock_open(on_hand=dict.fromkeys(ids, on_hand), note="benchmark")
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(TABLES)}")

    http = requests.Session()
    http.post(f"{payment_url}/_control/reset", timeout=30).raise_for_status()
    if scenario.payment_latency_ms:
        http.put(
            f"{payment_url}/_control/config",
            timeout=10,
            json={"latency_ms": scenario.payment_latency_ms},
        ).raise_for_status()
    http.post(f"{warehouse_url}/_control/reset", timeout=30).raise_for_status()
    http.put(
        f"{warehouse_url}/_control/stock",
        timeout=120,
        json={"items": [{"sku": s, "on_hand": on_hand} for s in skus]},
    ).raise_for_status()
    return f"{ids[0]}-{ids[-1]}"


def open_orders(low: int, high: int) -> int:
    """Orders of the phase not ended yet (through the status index: cheap to poll)."""
    not_final = [s for s in OrderStatus.values if s not in FINAL_STATUSES]
    return Order.objects.filter(status__in=not_final, id__gte=low, id__lte=high).count()


def wait_final(
    order_ids: list[int], *, timeout: float, stall: float, label: str, quiet: bool, on_tick=None
) -> list[int]:
    """Wait until every order is final (fulfilled, failed, cancelled); give up at `timeout`,
    or after `stall` seconds without any order ending. Returns the ids left open."""
    if not order_ids:
        return []
    low, high = min(order_ids), max(order_ids)
    deadline = time.monotonic() + timeout
    remaining = resilient(open_orders, low, high)
    last_progress = time.monotonic()
    with tqdm(
        total=len(order_ids),
        desc=label,
        unit="order",
        disable=quiet,
        mininterval=0.5,
        dynamic_ncols=True,
    ) as bar:
        bar.update(len(order_ids) - remaining)
        while remaining:
            now = time.monotonic()
            if now > deadline or now - last_progress > stall:
                break
            time.sleep(0.25)
            if on_tick:
                on_tick()
            left = resilient(open_orders, low, high)
            if left < remaining:
                bar.update(remaining - left)
                last_progress = time.monotonic()
            remaining = left
    if not remaining:
        return []
    return resilient(
        lambda: list(
            Order.objects.filter(id__in=order_ids)
            .exclude(status__in=FINAL_STATUSES)
            .values_list("id", flat=True)
        )
    )


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of unsorted values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def accepted_ids(load: dict) -> list[int]:
    return [r[3] for r in load["records"] if r[2] == 202 and r[3] is not None]


def phase_figures(load: dict) -> dict:
    """A phase's figures from the load records and the orders' rows: e2e throughput (first
    request to last order final, final times from the database), API latencies, to-final."""
    records = load["records"]
    accepted = [r for r in records if r[2] == 202 and r[3] is not None]
    ids = [r[3] for r in accepted]
    rows = list(
        Order.objects.filter(id__in=ids).values_list("id", "status", "created_at", "updated_at")
    )
    final = [(oid, c.timestamp(), u.timestamp()) for oid, s, c, u in rows if s in FINAL_STATUSES]
    first = min(r[0] for r in records) if records else None
    last_answer = max(r[0] + r[1] for r in records) if records else None
    last_final = max((u for _, _, u in final), default=None)
    latencies = [r[1] for r in accepted]
    to_final = [u - c for _, c, u in final]
    e2e = len(final) / (last_final - first) if final and last_final > first else None
    api_span = (last_answer - first) if records else None
    return {
        "orders": len(records),
        "accepted": len(accepted),
        "api_errors": len(records) - len(accepted),
        "error_samples": load.get("errors", [])[:5],
        "e2e_orders_per_s": round(e2e, 1) if e2e else None,
        "e2e_seconds": round(last_final - first, 3) if final else None,
        "api_requests_per_s": round(len(records) / api_span, 1) if api_span else None,
        "api_create_p50_ms": ms(percentile(latencies, 50)),
        "api_create_p95_ms": ms(percentile(latencies, 95)),
        "api_create_p99_ms": ms(percentile(latencies, 99)),
        "api_create_max_ms": ms(max(latencies, default=None)),
        "to_final_p50_ms": ms(percentile(to_final, 50)),
        "to_final_p99_ms": ms(percentile(to_final, 99)),
        "lag_p99_ms": ms(percentile([r[4] for r in records], 99)),
        "rate": load.get("rate"),
        "concurrency": load.get("concurrency"),
        "load_cpu_seconds": load.get("cpu_seconds"),
        "_ids": ids,
        "_first": first,
        "_final": final,
    }


def series(records: list[list], final: list[tuple], t0: float) -> dict:
    """Per-second bins from t0: answers and orders ending per second, API latency percentiles
    by request start, to-final percentiles by order creation."""
    answers, api, done, to_final = (
        defaultdict(int),
        defaultdict(list),
        defaultdict(int),
        defaultdict(list),
    )
    for start, latency, status, _, _ in records:
        answers[int(start + latency - t0)] += 1
        if status == 202:
            api[int(start - t0)].append(latency)
    for _, created, updated in final:
        done[int(updated - t0)] += 1
        to_final[int(created - t0)].append(updated - created)
    end = max([*answers, *done, 0]) + 1
    seconds = list(range(end))
    return {
        "t": seconds,
        "requests_per_s": [answers.get(s, 0) for s in seconds],
        "final_per_s": [done.get(s, 0) for s in seconds],
        **{
            f"api_p{p}_ms": [ms(percentile(api.get(s, []), p)) for s in seconds]
            for p in (50, 95, 99)
        },
        **{
            f"to_final_p{p}_ms": [ms(percentile(to_final.get(s, []), p)) for s in seconds]
            for p in (50, 99)
        },
    }


def provider_violations(by_key: dict[str, dict]) -> list[str]:
    """orders.audit's `with_provider` checks, from the payment service's record of every key
    in one answer (its stats) instead of one request per order: a paid order's charge must be
    captured there, a failed or cancelled order's must not be."""
    found = []
    checked = Order.objects.filter(
        status__in=[*PAID, *UNPAID_ENDS], payment__attempts__gt=0
    ).values_list("id", "status", "payment__idempotency_key")
    for order_id, status, key in checked.iterator(chunk_size=2000):
        charge = by_key.get(key, {}).get("status")
        if status in PAID and charge != "captured":
            found.append(
                f"order {order_id} is {status} but the provider has {charge or 'no charge'}"
            )
        if status in UNPAID_ENDS and charge == "captured":
            found.append(
                f"order {order_id} is {status} but the provider holds an unrefunded capture"
            )
    return found


def invariants(
    *, order_ids: list[int], open_ids: list[int], on_hand: int, payment_stats: dict
) -> dict:
    """orders.audit's checks (with the provider's side, see provider_violations) and the
    figures. lost: orders not final at the deadline plus 202s without a row; oversold: products
    with available < 0, stock ledger discrepancies, or more units sold than were in stock;
    double_charged: captures beyond the paid orders, or an order with two captures."""
    found = Order.objects.filter(id__in=order_ids).count()
    result = audit()
    result.violations += provider_violations(payment_stats["by_key"])
    sold = dict(
        OrderLine.objects.filter(
            order__status__in=[OrderStatus.RESERVED, OrderStatus.CONFIRMED, OrderStatus.FULFILLED]
        )
        .values("product_id")
        .annotate(units=Sum("quantity"))
        .values_list("product_id", "units")
    )
    oversold_products = {pid for pid, units in sold.items() if units > on_hand}
    oversold_products |= set(
        StockLevel.objects.filter(available__lt=0).values_list("product_id", flat=True)
    )
    ledger = [v for v in result.violations if v.startswith("product ")]
    paid = Order.objects.filter(status__in=[OrderStatus.CONFIRMED, OrderStatus.FULFILLED]).count()
    statuses = dict(Order.objects.values_list("status").annotate(n=Count("id")).order_by())
    reasons = dict(
        Order.objects.filter(status=OrderStatus.FAILED)
        .values_list("failure_reason")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {
        "lost": (len(order_ids) - found) + len(open_ids),
        "oversold": len(oversold_products) + len(ledger),
        "double_charged": max(0, payment_stats["captured"] - paid)
        + sum(1 for v in result.violations if "captured charges" in v),
        "audit_violations": result.violations[:20],
        "audit_violation_count": len(result.violations),
        "statuses": statuses,
        "failure_reasons": reasons,
        "units_sold": sum(sold.values()),
        "stock_units": on_hand,
        "captured_charges": payment_stats["captured"],
    }


def webhook_subscribe(receiver_url: str, *, count: int = 1, hanging: int = 0) -> None:
    """`count` subscriptions to every order event, at the receiver simulator (reset), each
    its own hook; the last `hanging` of them at hooks that never answer."""
    from webhooks.models import EventType, Subscription

    requests.post(f"{receiver_url}/_control/reset", timeout=30).raise_for_status()
    if hanging:  # held just past the sender's read timeout: the simulator's threads are few
        hold = {"hang_ms": 5_500}
        requests.put(f"{receiver_url}/_control/config", json=hold, timeout=30).raise_for_status()
    for n in range(count):
        hook = "bench" if n == 0 else f"bench-{n}"
        if n >= count - hanging:
            hook = f"hanging-{n}"
            pinned = {"outcome": "hang"}
            url = f"{receiver_url}/_control/hooks/{hook}"
            requests.put(url, json=pinned, timeout=30).raise_for_status()
        Subscription.objects.create(
            url=f"{receiver_url}/hooks/{hook}",
            event_types=[t for t in EventType.values if t.startswith("order.")],
            description="hanging" if hook.startswith("hanging") else "",
        )


def _healthy():
    """The deliveries of the subscriptions that answer (not the benchmark's hanging ones)."""
    from webhooks.models import Delivery

    return Delivery.objects.exclude(subscription__description="hanging")


def webhooks_pending() -> int:
    """Events not yet delivered: not dispatched, or with a delivery still pending (to the
    subscriptions that answer)."""
    from webhooks.models import Event

    return (
        Event.objects.filter(dispatched_at__isnull=True).count()
        + _healthy().filter(status="pending").count()
    )


def webhook_figures(half_peak_from: float | None = None) -> dict:
    """How long events took from their commit to their receiver's 2xx (the delivery lag):
    over the whole scenario (in the peak phase they queue up: the orders come faster than
    one webhooks worker sends), and for the events of the half-peak phase (from
    `half_peak_from`, Unix time; the peak's were all delivered before it began). And the
    rate the deliveries went out at, first event to last 2xx."""
    from webhooks.models import Event

    rows = list(
        _healthy().filter(status="delivered").values_list("delivered_at", "event__created_at")
    )
    lags = [(delivered - created).total_seconds() for delivered, created in rows]
    half = [
        (delivered - created).total_seconds()
        for delivered, created in rows
        if half_peak_from is not None and created.timestamp() >= half_peak_from
    ]
    span = (max(d for d, _ in rows) - min(c for _, c in rows)).total_seconds() if rows else None
    return {
        "events": Event.objects.count(),
        "delivered": len(lags),
        "failed": _healthy().filter(status="failed").count(),
        "pending": webhooks_pending(),
        "delivered_per_s": round(len(rows) / span, 1) if span else None,
        "lag_p50_ms": ms(percentile(lags, 50)),
        "lag_p99_ms": ms(percentile(lags, 99)),
        "lag_max_ms": ms(max(lags, default=None)),
        "lag_p50_ms_at_half_peak": ms(percentile(half, 50)),
        "lag_p99_ms_at_half_peak": ms(percentile(half, 99)),
    }
