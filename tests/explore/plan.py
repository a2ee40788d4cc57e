"""A seed's plan: the shop (products, stock), the actors, and the faults, each with the steps
of the run it lasts. Everything random the explorer does comes from the seed: the plan, and
the scheduler's choices while it runs (a random.Random of the seed's own)."""

import random
from dataclasses import dataclass, field

# Faults of the payment service, as its simulator's controls make them (config fields, or
# forced answers), rolled per request from the seed.
PAYMENT_FAULTS = {
    "lost": {"lost_rate": 0.4},  # done, the answer too late
    "slow": {"latency_ms": 60},  # slower than usual, within the timeout
    "drip": {"drip_rate": 0.3, "drip_interval_ms": 100},  # the answer a byte at a time
    "hung": {"hang_rate": 0.5, "hang_ms": 1500},  # accepted, never answered
    "5xx": {"error_rate": 0.4},
    "try_again": {"transient_rate": 0.4, "transient_statuses": [408, 409, 425, 429]},
    # A charge still being processed when the client gives up on it (held until the fault
    # is lifted), and another request with its key answered 400 or 422 "in progress", as
    # some providers do; lookups answer at once (no charge yet).
    "key_in_use": {"hold_charges": True, "in_use_status": 400},
    "key_in_use_422": {"hold_charges": True, "in_use_status": 422},
    "malformed": {"malformed_rate": 0.4},
    "outage": {"outage": True},
    "declines": {"decline_rate": 0.3},
}
# Faults of the warehouse.
WAREHOUSE_FAULTS = {
    "too_large": {"max_batch": 1},  # a batch of more than one shipment: 413
    "batch_refused": {"fail_next": ("batch", 400, 3)},  # the whole request refused
    "unauthorised": {"fail_next": ("batch", 401, 2)},
    "malformed": {"malformed_rate": 0.5},
    "hung": {"hang_rate": 0.5, "hang_ms": 1500},
    "drip": {"drip_rate": 0.4, "drip_interval_ms": 100},
    "5xx": {"error_rate": 0.5},
    "lost": {"lost_rate": 0.4},
    "outage": {"outage": True},
}
# Faults of the webhook receiver: its scripted answers.
RECEIVER_FAULTS = {
    "failing": ["fail"] * 6,
    "slow": ["slow"] * 4,
    "timing_out": ["timeout"] * 3,
}
# Faults of the workers and of the infrastructure.
WORKER_FAULTS = (
    "kill",  # a worker killed at a checkpoint (its claim held until it runs out)
    "time_limit",  # each batch cut by the task's soft time limit
    "claim_expiry",  # a slow holder's claim runs out under it
    "clock_offset",  # a worker on a machine whose clock is off
    "db_drop",  # a worker's database connection dropped mid-batch
    "redis_pause",  # Redis hung: every command accepted, none answered
    "backlog",  # more orders than a batch, waiting longer than the stuck threshold
)


@dataclass(frozen=True)
class Fault:
    system: str  # payments, warehouse, receiver, worker
    name: str
    start: int  # the step it begins at
    end: int  # the step it is lifted at

    def __str__(self) -> str:
        return f"{self.system}.{self.name} steps {self.start}-{self.end}"


@dataclass
class Plan:
    seed: int
    products: list[int]  # units on hand of each, here and at the warehouse
    orders: int
    workers: int
    steps: int  # steps of the fault phase (the drain comes after)
    faults: list[Fault] = field(default_factory=list)
    clock_offsets: dict[int, float] = field(default_factory=dict)  # worker -> seconds
    time_limit: float = 0.0  # seconds a batch may take before it is cut (0: none)
    webhooks: bool = True

    def has(self, system: str, name: str) -> bool:
        return any(f.system == system and f.name == name for f in self.faults)

    def active(self, step: int) -> list[Fault]:
        return [f for f in self.faults if f.start <= step < f.end]

    def describe(self) -> str:
        lines = [
            f"seed {self.seed}: {self.orders} orders, {len(self.products)} products on hand "
            f"{self.products}, {self.workers} workers, {self.steps} steps",
            *(f"  fault {f}" for f in self.faults),
        ]
        if self.clock_offsets:
            lines.append(f"  clock offsets {self.clock_offsets}")
        if self.time_limit:
            lines.append(f"  time limit {self.time_limit}s a batch")
        return "\n".join(lines)


def plan_for(seed: int) -> Plan:
    rng = random.Random(f"plan:{seed}")
    steps = rng.randint(120, 200)
    plan = Plan(
        seed=seed,
        products=[rng.choice([2, 4, 8, 30]) for _ in range(rng.randint(2, 4))],
        orders=rng.randint(10, 22),
        workers=rng.randint(2, 3),
        steps=steps,
        webhooks=rng.random() < 0.5,
    )
    systems = [
        ("payments", list(PAYMENT_FAULTS)),
        ("warehouse", list(WAREHOUSE_FAULTS)),
        ("worker", list(WORKER_FAULTS)),
    ]
    if plan.webhooks:
        systems.append(("receiver", list(RECEIVER_FAULTS)))
    # Each fault of each system equally likely; each lasting 30 steps at least.
    menu = [(system, name) for system, names in systems for name in names]
    for _ in range(rng.randint(1, 4)):
        system, name = rng.choice(menu)
        start = rng.randrange(0, steps - 30)
        end = rng.randrange(start + 30, steps + 1)
        plan.faults.append(Fault(system, name, start, end))
    if plan.has("worker", "clock_offset"):
        worker = rng.randrange(plan.workers)
        plan.clock_offsets[worker] = rng.choice([-1, 1]) * rng.uniform(4, 12)
    if plan.has("worker", "time_limit"):
        plan.time_limit = rng.choice([0.4, 0.7, 1.0])
    return plan
