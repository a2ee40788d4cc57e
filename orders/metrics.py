"""Order metrics for /metrics, computed at scrape time from the database.

The database is the one place every process's work ends up, so these counts are right
however many web processes, workers and containers there are, and survive restarts. The
counters count transitions in the order logs (each transition is logged exactly once, in
its own transaction); the gauge counts orders by their current status.
"""

from collections.abc import Iterator

from django.db.models import Count, F
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from orders.models import FailureReason, Order, OrderLog, OrderStatus

S = OrderStatus


class OrderCollector:
    def collect(self) -> Iterator[Metric]:
        created = CounterMetricFamily(
            "orderproj_orders_created", "Orders created (accepted by the API)."
        )
        confirmed = CounterMetricFamily(
            "orderproj_orders_confirmed", "Orders confirmed (payment captured, stock committed)."
        )
        fulfilled = CounterMetricFamily(
            "orderproj_orders_fulfilled", "Orders the warehouse acknowledged as shipped."
        )
        cancelled = CounterMetricFamily("orderproj_orders_cancelled", "Orders cancelled.")
        retried = CounterMetricFamily(
            "orderproj_orders_retried", "Failed orders re-opened by an operator."
        )
        failed = CounterMetricFamily(
            "orderproj_orders_failed",
            "Order failures by reason (an order retried by an operator may fail again).",
            labels=["reason"],
        )
        by_reason = dict.fromkeys(FailureReason.values, 0)
        totals = {"created": 0, "confirmed": 0, "fulfilled": 0, "cancelled": 0, "retried": 0}
        transitions = (
            OrderLog.objects.exclude(from_status=F("to_status"))
            .filter(to_status__in=[S.PENDING, S.CONFIRMED, S.FULFILLED, S.CANCELLED, S.FAILED])
            .values_list("from_status", "to_status", "event")
            .annotate(n=Count("id"))
            .order_by()
        )
        for from_status, to_status, event, n in transitions:
            if to_status == S.FAILED:
                by_reason[event] = by_reason.get(event, 0) + n
            elif to_status == S.PENDING:
                totals["created" if not from_status else "retried"] += n
            else:
                totals[to_status] += n
        created.add_metric([], totals["created"])
        confirmed.add_metric([], totals["confirmed"])
        fulfilled.add_metric([], totals["fulfilled"])
        cancelled.add_metric([], totals["cancelled"])
        retried.add_metric([], totals["retried"])
        for reason, n in sorted(by_reason.items()):
            failed.add_metric([reason], n)
        yield from (created, confirmed, failed, fulfilled, cancelled, retried)

        current = GaugeMetricFamily(
            "orderproj_orders", "Orders by current status.", labels=["status"]
        )
        counts = dict.fromkeys(S.values, 0)
        counts.update(Order.objects.values_list("status").annotate(n=Count("id")).order_by())
        for status, n in counts.items():
            current.add_metric([status], n)
        yield current
