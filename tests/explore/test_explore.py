"""The seeded fault explorer: each seed runs the real engine (several workers, the reconciler,
an operator cancelling, retrying and re-pushing, the warehouse sync, the webhook worker)
against the real PostgreSQL and the simulators over HTTP, under a random plan of faults of
the payment service, the warehouse, the webhook receiver, the workers and the infrastructure
(tests/explore/plan.py), then checks the invariants and the bounds (tests/explore/checks.py).

`make test` runs a fixed set of seeds (EXPLORE_SEEDS, default below); `make explore` runs as
many as asked (SEEDS=n, from FIRST=0) or one (SEED=n), and reports seeds per minute. A
failing seed prints its plan and what broke, and `make explore SEED=n` replays it: the same
plan, the same faults, the same choices of who runs at each checkpoint.
"""

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from tests.explore.checks import violations
from tests.explore.plan import plan_for
from tests.explore.world import World, staff_and_customer
from tests.faults.harness import PrivateRedis

pytestmark = pytest.mark.django_db(transaction=True)

DEFAULT_SEEDS = 24


def seeds() -> list[int]:
    if os.environ.get("EXPLORE_SEED"):
        return [int(os.environ["EXPLORE_SEED"])]
    first = int(os.environ.get("EXPLORE_FIRST", "0"))
    return list(range(first, first + int(os.environ.get("EXPLORE_SEEDS", DEFAULT_SEEDS))))


@dataclass
class Sims:
    payments: object
    warehouse: object
    receiver: object


@pytest.fixture(scope="module")
def explorer_redis(tmp_path_factory):
    redis = PrivateRedis(tmp_path_factory.mktemp("explorer-redis"))
    yield redis
    redis.stop()


TIMINGS: list[float] = []


@pytest.mark.parametrize("seed", seeds())
def test_a_seed_of_random_faults_keeps_every_invariant_and_bound(
    seed, payment_sim, warehouse_sim, receiver_sim, explorer_redis, settings, monkeypatch
):
    plan = plan_for(seed)
    monkeypatch.setenv("CELERY_BROKER_URL", explorer_redis.url)
    staff, customer = staff_and_customer()
    world = World(
        plan,
        sims=Sims(payment_sim, warehouse_sim, receiver_sim),
        redis=explorer_redis,
        staff=staff,
        customer=customer,
        settings_fixture=settings,
    )
    started = time.monotonic()
    with ExitStack() as stack:
        world.configure(stack)
        world.shop()
        world.actors()
        run = world.play()
        found = violations(world)
    TIMINGS.append(time.monotonic() - started)
    report = (
        f"\n{plan.describe()}\n  {len(run.order_ids)} orders, {run.killed} worker(s) killed, "
        f"{run.seconds:.1f}s"
    )
    print(report)
    assert not found, (
        f"{report}\n" + "\n".join(f"  - {v}" for v in found) + f"\nreplay: make explore SEED={seed}"
    )
