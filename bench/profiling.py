"""Sampling profiles of the stack under load, with py-spy, and their summary.

`py-spy record --subprocesses --nonblocking` follows each gunicorn master and Celery worker
and their children without pausing them; only threads on CPU are sampled (idle ones, waiting
on a socket, are not), so the samples say where CPU goes. The raw collapsed stacks are kept
(`<group>.txt`: open them in https://www.speedscope.app or feed them to flamegraph.pl) and
summarized: the innermost library or app frame of each sample (stdlib frames count for their
caller: `json.dumps` under the JSON log formatter counts as logging), the functions with the
most samples on CPU themselves, and those with the most samples below them.
"""

import re
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

from bench.stack import BIN, Stack

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
# First path component of a frame's file -> what it is, for the summary by area.
AREAS = {
    "psycopg": "psycopg (DB driver)",
    "psycopg_binary": "psycopg (DB driver)",
    "rest_framework": "DRF",
    "celery": "celery",
    "kombu": "kombu",
    "billiard": "celery",
    "redis": "redis-py",
    "requests": "requests/urllib3",
    "urllib3": "requests/urllib3",
    "pythonjsonlogger": "logging",
    "logging": "logging",
    "gunicorn": "gunicorn",
    "flask": "flask/werkzeug",
    "werkzeug": "flask/werkzeug",
    "simulators": "simulators",
    "orders": "app: orders",
    "inventory": "app: inventory",
    "payments": "app: payments",
    "catalog": "app: catalog",
    "orderproj": "app: orderproj",
    "bench": "bench",
    "prometheus_client": "prometheus_client",
    "drf_spectacular": "DRF",
    "whitenoise": "whitenoise",
    "vine": "celery",
    "amqp": "kombu",
}
# stdlib modules whose time is their caller's
STDLIB = {
    "json",
    "socket",
    "ssl",
    "selectors",
    "threading",
    "queue",
    "http",
    "email",
    "re",
    "uuid",
    "datetime",
    "decimal",
    "copy",
    "functools",
    "contextlib",
    "collections",
    "typing",
    "enum",
    "abc",
    "inspect",
    "weakref",
    "encodings",
    "codecs",
    "base64",
    "hashlib",
    "zlib",
    "<frozen",
    "importlib",
    "traceback",
    "linecache",
    "string",
    "random",
    "time",
    "os",
    "posixpath",
    "genericpath",
    "signal",
    "struct",
    "pickle",
    "io",
    "urllib",
    "sqlite3",
    "dataclasses",
    "operator",
    "itertools",
    "locale",
    "tempfile",
    "shutil",
    "zoneinfo",
    "calendar",
    "numbers",
    "_strptime",
    "textwrap",
    "keyword",
    "warnings",
    "asyncio",
}


def _parse(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    if not match:
        return frame, ""
    return match.group("func"), match.group("file")


def _area_of(file: str) -> str | None:
    top = file.split("/", 1)[0]
    if file.startswith("django/db"):
        return "django ORM"
    if top == "django":
        return "django (other)"
    if top in AREAS:
        return AREAS[top]
    if top in STDLIB or (top.endswith(".py") and top[:-3] in STDLIB):
        return None
    return f"other: {top}"


def summarize(raw_path: Path, top: int = 25) -> dict:
    """Samples by area, the top functions on CPU themselves (self) and below (inclusive)."""
    areas: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        parsed = [_parse(f) for f in frames]
        func, file = parsed[-1]
        self_time[f"{func} ({file})"] += n
        for name in {f"{fn} ({fl})" for fn, fl in parsed}:
            inclusive[name] += n
        area = next((a for _, fl in reversed(parsed) if (a := _area_of(fl))), "stdlib/other")
        areas[area] += n

    def share(counter: Counter[str], limit: int) -> list[list]:
        return [[name, n, round(100 * n / total, 1)] for name, n in counter.most_common(limit)]

    return {
        "samples": total,
        "by_area_pct": {a: round(100 * n / total, 1) for a, n in areas.most_common()}
        if total
        else {},
        "top_self": share(self_time, top) if total else [],
        "top_inclusive": share(inclusive, top * 2) if total else [],
    }


class Profiler:
    """py-spy on the web, worker and simulator process trees while a phase runs."""

    def __init__(self, stack: Stack, out_dir: Path, rate: int = 100):
        self.stack, self.out_dir, self.rate = stack, out_dir, rate
        self.spies: dict[str, subprocess.Popen] = {}

    @staticmethod
    def available() -> bool:
        return (BIN / "py-spy").exists() or shutil.which("py-spy") is not None

    def start(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        spy = str(BIN / "py-spy") if (BIN / "py-spy").exists() else "py-spy"
        for name, proc in self.stack.procs.items():
            if name == "redis":
                continue
            self.spies[name] = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(proc.pid),
                    "--subprocesses",
                    "--nonblocking",
                    "--rate",
                    str(self.rate),
                    "--format",
                    "raw",
                    "--output",
                    str(self.out_dir / f"{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=(self.out_dir / f"{name}.log").open("w"),
            )

    def stop(self) -> dict:
        for spy in self.spies.values():
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)
        summaries = {}
        for name, spy in self.spies.items():
            try:
                spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
            raw = self.out_dir / f"{name}.txt"
            if raw.exists():
                summaries[name] = summarize(raw)
        self.spies.clear()
        return summaries
