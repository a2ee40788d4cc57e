"""The admin dashboard's chart: the last 24 h of orders, per hour of creation, by the outcome
their status is now, drawn on the server as a small stacked-bar SVG (no script, no library;
admin/orders/operations_dashboard.html places the shapes computed here). One aggregate
query counts them, on PostgreSQL and SQLite alike."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Q
from django.db.models.functions import TruncHour
from django.utils import timezone

from orders.models import Order, OrderStatus

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Outcome:
    key: str  # also the CSS class of its colour: bar-<key> (core/static/core/admin.css)
    label: str
    statuses: tuple[str, ...]


# Bottom to top in each bar: what went through, what did not, what is not decided yet.
OUTCOMES = (
    Outcome("done", "Confirmed or fulfilled", (OrderStatus.CONFIRMED, OrderStatus.FULFILLED)),
    Outcome("failed", "Failed", (OrderStatus.FAILED,)),
    Outcome("cancelled", "Cancelled", (OrderStatus.CANCELLED,)),
    Outcome("in_flight", "Still in flight", (OrderStatus.PENDING, OrderStatus.RESERVED)),
)


@dataclass(frozen=True)
class HourCounts:
    hour: datetime  # the hour's start, aware
    counts: dict[str, int]  # Outcome.key -> orders created in that hour

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def order_outcomes_by_hour(*, since: datetime, until: datetime) -> list[HourCounts]:
    """Orders created from `since` on, counted per hour (of the current time zone) by
    outcome: one query (TruncHour, a Count filtered by status per outcome). Every hour from
    since's to until's is listed, with zeros where no order was created."""
    rows = (
        Order.objects.filter(created_at__gte=since)
        .annotate(hour=TruncHour("created_at"))
        .values("hour")
        .annotate(**{o.key: Count("id", filter=Q(status__in=o.statuses)) for o in OUTCOMES})
        .order_by("hour")
    )
    found = {row["hour"]: row for row in rows}
    # Stepped in UTC, so that a day with a clock change still has one bar per real hour.
    first = timezone.localtime(since).replace(minute=0, second=0, microsecond=0)
    hours, hour = [], first.astimezone(UTC)
    while hour <= until:
        row = found.get(hour, {})
        hours.append(HourCounts(hour, {o.key: row.get(o.key, 0) for o in OUTCOMES}))
        hour += HOUR
    return hours


# --- Geometry (SVG user units; the SVG scales to its box) --------------------------------


@dataclass(frozen=True)
class Bar:
    """One outcome's part of one hour's bar."""

    outcome: str
    count: int
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Column:
    hour: datetime
    total: int
    bars: list[Bar]


@dataclass(frozen=True)
class Tick:
    at: float  # x for the hour labels, y for the count labels
    label: str


@dataclass(frozen=True)
class LegendEntry:
    key: str
    label: str
    count: int


WIDTH, HEIGHT = 480, 170
LEFT, RIGHT, TOP, BOTTOM = 36, 474, 8, 146  # the plot area; labels outside it


@dataclass(frozen=True)
class OutcomeChart:
    title: str
    description: str
    columns: list[Column]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    legend: list[LegendEntry]
    total: int
    # the drawing's size, and its plot area within it
    width: int = WIDTH
    height: int = HEIGHT
    left: float = LEFT
    right: float = RIGHT
    top: float = TOP
    bottom: float = BOTTOM


BAR_SHARE = 0.72  # of an hour's slot; the rest is the gap between bars
LABEL_EVERY_HOURS = 6


def _scale_max(n: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at or above n: round axis labels."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= n:
                return step * factor
        step *= 10


def _count_label(n: int) -> str:
    return f"{n / 1000:g}k" if n >= 1000 else str(n)  # 2500 -> "2.5k"


def _span(hour: datetime) -> str:
    start = timezone.localtime(hour)
    return f"{start:%H:%M} to {start + HOUR:%H:%M}"


def order_outcome_chart(*, since: datetime, until: datetime) -> OutcomeChart:
    hours = order_outcomes_by_hour(since=since, until=until)
    top_value = _scale_max(max((h.total for h in hours), default=0) or 1)
    per_order = (BOTTOM - TOP) / top_value
    slot = (RIGHT - LEFT) / len(hours)
    bar_width = round(slot * BAR_SHARE, 2)
    labels = {o.key: o.label.lower() for o in OUTCOMES}

    columns, x_ticks = [], []
    for i, counts in enumerate(hours):
        x = round(LEFT + i * slot + (slot - bar_width) / 2, 2)
        base: float
        base, bars = BOTTOM, []
        for outcome in OUTCOMES:
            n = counts.counts[outcome.key]
            if not n:
                continue
            height = n * per_order
            base -= height
            bars.append(
                Bar(
                    outcome=outcome.key,
                    count=n,
                    x=x,
                    y=round(base, 2),
                    width=bar_width,
                    height=round(height, 2),
                    title=f"{_span(counts.hour)}: {n} {labels[outcome.key]}",
                )
            )
        columns.append(Column(hour=counts.hour, total=counts.total, bars=bars))
        local = timezone.localtime(counts.hour)
        if local.hour % LABEL_EVERY_HOURS == 0:
            x_ticks.append(Tick(round(x + bar_width / 2, 2), f"{local:%H:%M}"))

    y_ticks = [Tick(BOTTOM, "0"), Tick(TOP, _count_label(top_value))]
    if top_value % 2 == 0:
        y_ticks.insert(1, Tick(round((TOP + BOTTOM) / 2, 2), _count_label(top_value // 2)))

    legend = [LegendEntry(o.key, o.label, sum(h.counts[o.key] for h in hours)) for o in OUTCOMES]
    total = sum(entry.count for entry in legend)
    zone = timezone.get_current_timezone_name()
    description = (
        f"{total} orders created since {timezone.localtime(since):%Y-%m-%d %H:%M:%S} {zone}, "
        "one bar per hour of creation: "
        + ", ".join(f"{entry.count} {entry.label.lower()}" for entry in legend)
        + "."
    )
    return OutcomeChart(
        title=f"Orders per hour, last 24 h ({zone}), by outcome",
        description=description,
        columns=columns,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        legend=legend,
        total=total,
    )
