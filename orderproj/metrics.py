"""Prometheus metrics at /metrics (prometheus_client).

Several processes do the work (gunicorn workers, Celery workers and their prefork children,
beat, possibly in separate containers), and the web process answering a scrape is just one
of them. So nothing is counted in process memory; every sample is read at scrape time from
state all processes share:

- orders created / confirmed / failed by reason ... : the database (orders.metrics);
- time since the last successful warehouse sync: the database (inventory.metrics);
- Celery task durations and retries: recorded by the workers after every task run in the
  broker's Redis (orderproj.celery_signals, orderproj.ops_state);
- queue depth: the broker itself (Redis LLEN; files waiting, in the embedded mode);
- beat's heartbeat age: where beat records it (orderproj.ops_state).

That avoids prometheus_client's multiprocess mode, which needs one directory shared by every
process (impossible across containers) and cleaned between runs. The counts survive process
restarts; Prometheus handles the reset of a counter whose storage was lost.

Like orderproj.urls, this module is part of the composition root: it may import the apps.
"""

import hmac
import logging
from collections.abc import Iterator
from pathlib import Path

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from orderproj.ops_state import (
    DURATION_BUCKETS,
    beat_heartbeat_age,
    broker_is_redis,
    redis_client,
    task_metrics_read,
)
from webhooks.metrics import WebhookCollector

logger = logging.getLogger(__name__)


def queue_names() -> list[str]:
    from orderproj.celery import app

    names = [app.conf.task_default_queue]
    names += [q.name for q in app.conf.task_queues or () if q.name not in names]
    return names


def _queue_lengths() -> dict[str, int]:
    names = queue_names()
    if broker_is_redis():
        pipe = redis_client().pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
        return dict(zip(names, pipe.execute(), strict=True))
    # The filesystem transport keeps one file per waiting message: <time>_<id>.<queue>.msg
    folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in")
    if folder is None:
        return {}
    return {name: sum(1 for _ in Path(folder).glob(f"*.{name}.msg")) for name in names}


class CeleryCollector:
    """Queue depth, task runs and beat's heartbeat. Read from the broker: while it does not
    answer these are left out (logged), and the database's metrics are still served."""

    def collect(self) -> Iterator[Metric]:
        try:
            families = list(self._families())
        except (redis.RedisError, OSError) as exc:
            logger.warning("broker metrics left out (%s: %s)", type(exc).__name__, exc)
            return
        yield from families

    def _families(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily(
            "orderproj_celery_queue_length",
            "Messages waiting in the broker's queue.",
            labels=["queue"],
        )
        for name, length in _queue_lengths().items():
            queue.add_metric([name], length)
        yield queue
        if broker_is_redis():
            yield GaugeMetricFamily(
                "orderproj_celery_unacked_messages",
                "Messages delivered to a worker and not yet acknowledged (acks_late: running "
                "or waiting for their countdown).",
                value=redis_client().hlen("unacked"),
            )

        durations, retries = task_metrics_read()
        histogram = HistogramMetricFamily(
            "orderproj_celery_task_duration_seconds",
            "Duration of Celery task runs, by task and outcome (success, retry, failure).",
            labels=["task", "state"],
        )
        series = sorted(
            {field.rsplit("|", 1)[0] for field in durations if field.endswith("|count")}
        )
        for key in series:
            buckets, cumulative = [], 0.0
            for bound in (*map(repr, DURATION_BUCKETS), "+Inf"):
                cumulative += durations.get(f"{key}|le|{bound}", 0.0)
                buckets.append((bound, cumulative))
            task, state = key.split("|", 1)
            histogram.add_metric([task, state], buckets, durations.get(f"{key}|sum", 0.0))
        yield histogram
        retried = CounterMetricFamily(
            "orderproj_celery_task_retries",
            "Retries Celery tasks asked for, by task.",
            labels=["task"],
        )
        for task, n in sorted(retries.items()):
            retried.add_metric([task], n)
        yield retried

        age = beat_heartbeat_age()
        if age is not None:
            yield GaugeMetricFamily(
                "orderproj_beat_last_tick_age_seconds",
                "Seconds since celery-beat's last tick.",
                value=age,
            )


def build_registry() -> CollectorRegistry:
    from inventory.metrics import WarehouseSyncCollector
    from orders.metrics import OrderCollector

    # Our own registry: the default one would add this web process's own process metrics,
    # which say little about a deployment of many processes.
    registry = CollectorRegistry(auto_describe=False)
    for collector in (
        OrderCollector(),
        WarehouseSyncCollector(),
        WebhookCollector(),
        CeleryCollector(),
    ):
        registry.register(collector)
    return registry


def _authorized(request: HttpRequest) -> bool:
    token = settings.METRICS_BEARER_TOKEN
    if not token:
        return True
    sent = request.headers.get("Authorization", "")
    return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus text format. Open unless METRICS_BEARER_TOKEN is set."""
    if not _authorized(request):
        response = HttpResponse("Unauthorized.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = "Bearer"
        return response
    return HttpResponse(generate_latest(build_registry()), content_type=CONTENT_TYPE_LATEST)
