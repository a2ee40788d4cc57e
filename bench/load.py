"""The load process of the order benchmark: N orders POSTed over HTTP by C concurrent clients.

    python -m bench.load --base-url http://127.0.0.1:8000 --token <key> --orders 2000 \
        --concurrency 16 --product-ids 1-1000 --out load.json [--rate 100]

Without --rate it is a closed loop: each client sends its next order as soon as the previous
one was answered (the peak the API sustains). With --rate the orders are sent on a fixed
schedule (order i at start + i / rate), whatever the answers, and each record also keeps how
late its request left (`lag`), so a client pool too small for the rate shows up.

Each client is a thread with one keep-alive connection (http.client: far less client CPU per
request than `requests`, which matters on a 2-core machine shared with the server). A progress
bar goes to stderr. The result, for the driver (bench/orders.py), is one JSON file:
`records` = [[start_unix, latency_s, http_status, order_id, lag_s], ...] and the process's own
CPU time.
"""

import argparse
import http.client
import itertools
import json
import random
import resource
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

IDLE_RECONNECT_S = 1.0


def parse_ids(text: str) -> list[int]:
    """ "1-1000" or "3,5,8" (or a mix)."""
    ids: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        ids += range(int(low), int(high or low) + 1)
    return ids


class Load:
    def __init__(self, args: argparse.Namespace):
        url = urlsplit(args.base_url)
        self.host, self.port = url.hostname, url.port or 80
        self.path = args.path
        self.headers = {
            "Authorization": f"Token {args.token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self.orders, self.rate, self.quantity = args.orders, args.rate, args.quantity
        self.product_ids = parse_ids(args.product_ids)
        self.seed = args.seed
        self.next_index = itertools.count()
        self.lock = threading.Lock()
        self.records: list[list] = []
        self.errors: list[str] = []
        self.start_at = 0.0
        self.bar = tqdm(
            total=args.orders,
            desc=args.label,
            unit="order",
            disable=args.quiet,
            mininterval=0.5,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def take(self) -> int | None:
        with self.lock:
            i = next(self.next_index)
        return i if i < self.orders else None

    def client(self, number: int) -> None:
        rng = random.Random(f"{self.seed}:{number}")
        conn: http.client.HTTPConnection | None = None
        last_used = 0.0
        while (i := self.take()) is not None:
            scheduled = self.start_at + i / self.rate if self.rate else None
            if scheduled is not None and (wait := scheduled - time.time()) > 0:
                time.sleep(wait)
            body = json.dumps(
                {"items": [{"product_id": rng.choice(self.product_ids), "quantity": self.quantity}]}
            )
            if conn is not None and time.monotonic() - last_used > IDLE_RECONNECT_S:
                conn.close()  # the server is about to drop it (gunicorn's keepalive: 2 s)
                conn = None
            started, clock = time.time(), time.perf_counter()
            status, order_id = 0, None
            try:
                status, data, conn = self.post(conn, body)
                if status == 202:
                    order_id = json.loads(data)["id"]
                elif len(self.errors) < 20:
                    self.errors.append(f"HTTP {status}: {data[:300]!r}")
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                if conn is not None:
                    conn.close()
                conn = None
                if len(self.errors) < 20:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            latency = time.perf_counter() - clock
            last_used = time.monotonic()
            lag = started - scheduled if scheduled is not None else 0.0
            with self.lock:
                self.records.append([started, latency, status, order_id, lag])
            self.bar.update(1)
        if conn is not None:
            conn.close()

    def post(
        self, conn: http.client.HTTPConnection | None, body: str
    ) -> tuple[int, bytes, http.client.HTTPConnection | None]:
        """POST on the kept-alive connection; if the server had closed it (the request never
        reached the app: a broken pipe, or a reset before any answer), once more on a new
        connection."""
        reused = conn is not None
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request("POST", self.path, body, self.headers)
            response = conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            conn.close()
            if not reused:
                raise
            return self.post(None, body)
        data = response.read()
        if response.will_close:
            conn.close()
            conn = None
        return response.status, data, conn

    def run(self, concurrency: int) -> None:
        self.start_at = time.time() + 0.05
        threads = [
            threading.Thread(target=self.client, args=(n,), daemon=True) for n in range(concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.bar.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--path", default="/api/orders/")
    parser.add_argument("--token", required=True)
    parser.add_argument("--orders", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=None, help="orders/s; default: closed loop")
    parser.add_argument("--product-ids", required=True, help='e.g. "1-1000" or "7"')
    parser.add_argument("--quantity", type=int, default=1)
    parser.add_argument("--seed", default="bench")
    parser.add_argument("--label", default="orders")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    load = Load(args)
    load.run(args.concurrency)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(args.out).write_text(
        json.dumps(
            {
                "orders": args.orders,
                "concurrency": args.concurrency,
                "rate": args.rate,
                "records": sorted(load.records),
                "errors": load.errors,
                "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
