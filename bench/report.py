"""The order benchmark's output: the terminal summary, the issue's targets, and a PNG per
scenario (throughput over time, latency percentiles). Re-plot a saved run with

    .venv/bin/python -m bench.report bench-results/latest.json
"""

import json
import sys
from pathlib import Path

# The batched pipeline issue's targets: ratios to references measured in the same run (the
# Celery no-op task on the same worker settings), so they hold on a slow day as on a fast one.
TARGETS = {
    "spread_e2e_vs_celery_noop": 0.5,
    "hot_e2e_vs_celery_noop": 0.4,
    "slow_payments_e2e_vs_celery_noop": 0.4,
    "machine_cpu_per_order_vs_noop_task": 2.0,
    "queries_per_order": 6,
    "api_create_p99_ms_at_half_peak": 30,
    "to_final_p99_ms_at_half_peak": 1000,
}


STACK_GROUPS = ("web", "worker", "postgres", "redis", "simulators")


def cpu_capacity(per_order: dict[str, float], cores: int) -> dict[str, float | None]:
    """The orders/s the machine's cores could carry if the stack had them all to itself, from
    the CPU each order cost the stack (not the load process or the driver): what the machine
    bounds the throughput to, whatever else ran meanwhile. PostgreSQL's share is undercounted
    when its backends are short-lived (a connection per task: they end between samples)."""

    def capacity(groups) -> float | None:
        ms = sum(per_order.get(g, 0.0) for g in groups)
        return round(cores * 1000 / ms, 1) if ms else None

    return {
        "stack": capacity(STACK_GROUPS),
        "stack_without_simulators": capacity([g for g in STACK_GROUPS if g != "simulators"]),
    }


def _fmt(value, width: int, digits: int = 1) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, float):
        text = f"{value:.{digits}f}"
    else:
        text = str(value)
    return text.rjust(width)


def targets(result: dict) -> list[dict]:
    """Each target with the measured value and whether it is met (None: not measured in this
    run)."""
    noop = result.get("celery_noop_per_s")
    noop_cpu = (result.get("celery_noop") or {}).get("cpu_ms_per_task", {}).get("machine")
    checks = []

    def check(name: str, value, limit, *, at_most: bool = False) -> None:
        met = None if value is None else (value <= limit if at_most else value >= limit)
        checks.append({"target": name, "value": value, "limit": limit, "met": met})

    def ratio(value, reference) -> float | None:
        return round(value / reference, 3) if value and reference else None

    for s in result["scenarios"]:
        name = s["name"]
        key = f"{name.replace('-', '_')}_e2e_vs_celery_noop"
        if key in TARGETS:
            check(
                f"{name}: e2e / celery no-op >=", ratio(s["e2e_orders_per_s"], noop), TARGETS[key]
            )
        if name == "hot":
            check("hot: oversold ==", s["oversold"], 0, at_most=True)
            sold, stock = s.get("units_sold"), s.get("stock_units")
            check(
                "hot: units unsold of the stock ==",
                None if sold is None else stock - sold,
                0,
                at_most=True,
            )
        machine = (s.get("cpu_ms_per_order") or {}).get("machine")
        check(
            f"{name}: machine CPU per order / per no-op task <=",
            ratio(machine, noop_cpu),
            TARGETS["machine_cpu_per_order_vs_noop_task"],
            at_most=True,
        )
        for what, key in (
            ("queries per order <=", "queries_per_order"),
            ("API create p99 ms at half peak <=", "api_create_p99_ms_at_half_peak"),
            ("to-final p99 ms at half peak <=", "to_final_p99_ms_at_half_peak"),
        ):
            check(f"{name}: {what}", s.get(key), TARGETS[key], at_most=True)
    return checks


def summary(result: dict) -> str:
    lines = []
    head = (
        f"{'scenario':<14}{'orders':>7}{'e2e/s':>8}{'api/s':>8}{'api p50':>8}{'p95':>7}"
        f"{'p99':>7}{'p99@½':>7}{'final p50':>10}{'p99':>8}{'q/ord':>7}"
        f"{'oversold':>9}{'lost':>5}{'2xchg':>6}"
    )
    lines += [head, "-" * len(head)]
    for s in result["scenarios"]:
        lines.append(
            f"{s['name']:<14}{_fmt(s['orders'], 7)}{_fmt(s['e2e_orders_per_s'], 8)}"
            f"{_fmt(s.get('api_requests_per_s'), 8)}{_fmt(s['api_create_p50_ms'], 8)}"
            f"{_fmt(s['api_create_p95_ms'], 7)}{_fmt(s['api_create_p99_ms'], 7)}"
            f"{_fmt(s.get('api_create_p99_ms_at_half_peak'), 7)}"
            f"{_fmt(s['to_final_p50_ms'], 10, 0)}{_fmt(s['to_final_p99_ms'], 8, 0)}"
            f"{_fmt(s.get('queries_per_order'), 7)}{_fmt(s['oversold'], 9)}"
            f"{_fmt(s['lost'], 5)}{_fmt(s['double_charged'], 6)}"
        )
    lines.append("")
    lines.append(
        f"celery no-op round trips/s: {_fmt(result.get('celery_noop_per_s'), 0)}   "
        f"PostgreSQL order txn/s: {_fmt(result.get('pg_order_txn_per_s'), 0)} "
        f"(one hot row: {_fmt(result.get('pg_order_txn_hot_per_s'), 0)})"
    )
    cpu_rows = [s for s in result["scenarios"] if s.get("cpu_ms_per_order")]
    if cpu_rows:
        groups = sorted(
            {g for s in cpu_rows for g in s["cpu_ms_per_order"]} - {"machine"},
            key=lambda g: -max(s["cpu_ms_per_order"].get(g, 0) for s in cpu_rows),
        )
        lines.append("")
        lines.append(
            "CPU ms per order (peak phase), by process: "
            + "   ".join(f"{g}" for g in [*groups, "machine"])
        )
        cores = result.get("machine", {}).get("cpus") or 1
        for s in cpu_rows:
            per = s["cpu_ms_per_order"]
            capacity = cpu_capacity(per, cores)
            lines.append(
                f"  {s['name']:<14}"
                + "   ".join(f"{g} {per.get(g, 0):.2f}" for g in [*groups, "machine"])
            )
            lines.append(
                f"  {'':<14}-> the stack's CPU per order allows at most {capacity['stack']} "
                f"orders/s on {cores} cores ({capacity['stack_without_simulators']} without "
                "the simulators' share)"
            )
    for s in result["scenarios"]:
        for group, profile in (s.get("profile") or {}).items():
            areas = ", ".join(f"{a} {p}%" for a, p in list(profile["by_area_pct"].items())[:6])
            lines.append(f"profile of {group} ({s['name']}, {profile['samples']} samples): {areas}")
    if result.get("quick"):
        return "\n".join(lines)
    lines.append("")
    lines.append("Targets (ratios to the references of this run):")
    for t in targets(result):
        mark = {True: "PASS", False: "MISS", None: "n/a "}[t["met"]]
        lines.append(f"  [{mark}] {t['target']} {t['limit']}: measured {t['value']}")
    return "\n".join(lines)


def plot(scenario: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = scenario["series"]
    t = data["t"]
    fig, (top, mid, bottom) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    title = (
        f"{scenario['name']}: {scenario['orders']} orders, "
        f"{scenario['e2e_orders_per_s']} orders/s end to end, API p99 "
        f"{scenario['api_create_p99_ms']} ms, to final p99 {scenario['to_final_p99_ms']} ms"
    )
    fig.suptitle(title, fontsize=10)
    top.plot(t, data["requests_per_s"], label="API answers /s")
    top.plot(t, data["final_per_s"], label="orders final /s")
    top.set_ylabel("per second")
    for p in (50, 95, 99):
        mid.plot(t, data[f"api_p{p}_ms"], label=f"API create p{p}")
    mid.set_yscale("log")
    mid.set_ylabel("ms (by request start)")
    for p in (50, 99):
        bottom.plot(t, data[f"to_final_p{p}_ms"], label=f"to final p{p}")
    bottom.set_yscale("log")
    bottom.set_ylabel("ms (by order creation)")
    bottom.set_xlabel("seconds since the first request")
    if (start := scenario.get("half_peak_starts_at_s")) is not None:
        for ax in (top, mid, bottom):
            ax.axvline(start, color="grey", linestyle="--", linewidth=1, label="half-peak phase")
    for ax in (top, mid, bottom):
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    path = Path((argv or sys.argv[1:] or ["bench-results/latest.json"])[0])
    result = json.loads(path.read_text())
    for scenario in result["scenarios"]:
        plot(scenario, path.parent / f"{scenario['name']}.png")
    print(summary(result))


if __name__ == "__main__":
    main()
