"""The warehouse simulator over real HTTP: stock pages, shipments, drift, injected failures."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from simulators import warehouse
from simulators.tests.clients import READ_TIMEOUT_S, read_byte_by_byte
from simulators.tests.servers import serve, serve_in_process


def set_stock(http: requests.Session, url: str, stock: dict[str, int]) -> dict[str, int]:
    items = [{"sku": sku, "on_hand": on_hand} for sku, on_hand in stock.items()]
    response = http.put(f"{url}/_control/stock", json={"items": items})
    assert response.status_code == 200, response.text
    return response.json()


def configure(http: requests.Session, url: str, **changes: Any) -> None:
    response = http.put(f"{url}/_control/config", json=changes)
    assert response.status_code == 200, response.text


def all_stock(http: requests.Session, url: str, limit: int = 1000) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    after = ""
    while after is not None:
        page = http.get(f"{url}/stock", params={"after": after, "limit": limit}).json()
        results += page["results"]
        after = page["next_after"]
    return results


def by_sku(http: requests.Session, url: str) -> dict[str, tuple[int, int]]:
    return {row["sku"]: (row["on_hand"], row["version"]) for row in all_stock(http, url)}


def ship(
    http: Any, url: str, order_id: Any, lines: dict[str, int], **kwargs: Any
) -> requests.Response:
    body = {"order_id": order_id, "lines": [{"sku": s, "quantity": q} for s, q in lines.items()]}
    return http.post(f"{url}/shipments", json=body, **kwargs)


def ship_batch(http: Any, url: str, order_ids: list[str], **kwargs: Any) -> requests.Response:
    shipments = [{"order_id": o, "lines": [{"sku": "A", "quantity": 1}]} for o in order_ids]
    return http.post(f"{url}/shipments/batch", json={"shipments": shipments}, **kwargs)


def fail_next(http: requests.Session, url: str, **body: Any) -> None:
    response = http.post(f"{url}/_control/fail_next", json=body)
    assert response.status_code == 200, response.text


def shipped(http: requests.Session, url: str) -> list[str]:
    """The order ids shipped, in the order they shipped."""
    return [s["order_id"] for s in http.get(f"{url}/_control/shipments").json()["results"]]


def test_stock_is_paged_by_sku_without_an_empty_last_page(http, warehouse_url):
    set_stock(http, warehouse_url, {f"sku-{n:05d}": n for n in range(2000)})

    first = http.get(f"{warehouse_url}/stock", params={"limit": 1000}).json()
    second = http.get(
        f"{warehouse_url}/stock", params={"after": first["next_after"], "limit": 1000}
    ).json()

    assert first["next_after"] == "sku-00999"
    assert second["next_after"] is None
    assert [r["sku"] for r in first["results"] + second["results"]] == [
        f"sku-{n:05d}" for n in range(2000)
    ]
    assert second["results"][-1] == {"sku": "sku-01999", "on_hand": 1999, "version": 1}
    assert second["as_of"].endswith("Z")


def test_paging_100k_skus_at_10k_is_fast(http, warehouse_url):
    # given
    stock = {f"SKU-{n:06d}": n % 97 for n in range(100_000)}
    started = time.monotonic()
    assert set_stock(http, warehouse_url, stock) == {"items": 100_000, "changed": 100_000}
    upsert_seconds = time.monotonic() - started

    # when
    started = time.monotonic()
    rows = all_stock(http, warehouse_url, limit=10_000)
    paging_seconds = time.monotonic() - started

    # then
    print(f"upsert 100k: {upsert_seconds:.2f}s, paging 100k at 10k: {paging_seconds:.2f}s")
    assert [row["sku"] for row in rows] == sorted(stock)
    assert paging_seconds < 2.5  # the requirement is "well under 5 s"
    assert upsert_seconds < 10


def test_upsert_versions_only_new_or_changed_skus(http, warehouse_url):
    set_stock(http, warehouse_url, {"A": 5, "B": 5})

    result = set_stock(http, warehouse_url, {"A": 5, "B": 7, "C": 0})

    assert result == {"items": 3, "changed": 2}
    assert by_sku(http, warehouse_url) == {"A": (5, 1), "B": (7, 2), "C": (0, 1)}


def test_shipment_takes_units_once_and_answers_new_levels(http, warehouse_url):
    # given
    set_stock(http, warehouse_url, {"A": 10, "B": 3, "C": 1})

    # when
    created = ship(http, warehouse_url, 42, {"A": 4, "B": 3})
    repeated = ship(http, warehouse_url, "42", {"B": 3, "A": 4})

    # then
    assert created.status_code == 201
    answer = created.json()
    assert answer["shipment_id"].startswith("sh_")
    assert answer["order_id"] == "42"
    assert answer["lines"] == [
        {"sku": "A", "quantity": 4, "on_hand": 6, "version": 2},
        {"sku": "B", "quantity": 3, "on_hand": 0, "version": 2},
    ]
    assert (repeated.status_code, repeated.json()) == (200, answer)
    assert by_sku(http, warehouse_url) == {"A": (6, 2), "B": (0, 2), "C": (1, 1)}
    assert http.get(f"{warehouse_url}/shipments/42").json() == answer
    listed = http.get(f"{warehouse_url}/_control/shipments").json()
    assert listed == {"count": 1, "results": [answer]}


def test_lines_of_one_sku_are_taken_together(http, warehouse_url):
    set_stock(http, warehouse_url, {"A": 5})
    body = {"order_id": "o1", "lines": [{"sku": "A", "quantity": 2}, {"sku": "A", "quantity": 3}]}

    response = http.post(f"{warehouse_url}/shipments", json=body)

    assert response.status_code == 201
    assert [(line["on_hand"], line["version"]) for line in response.json()["lines"]] == [(0, 2)] * 2


def test_order_id_reused_with_other_lines_is_a_conflict(http, warehouse_url):
    set_stock(http, warehouse_url, {"A": 10})
    ship(http, warehouse_url, "o1", {"A": 1})

    response = ship(http, warehouse_url, "o1", {"A": 2})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "order_id_reused"
    assert by_sku(http, warehouse_url) == {"A": (9, 2)}


def test_unknown_sku_is_422_and_changes_nothing(http, warehouse_url):
    set_stock(http, warehouse_url, {"A": 10})

    response = ship(http, warehouse_url, "o1", {"A": 1, "ZZZ": 1})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unknown_sku"
    assert response.json()["error"]["details"] == {"skus": ["ZZZ"]}
    assert by_sku(http, warehouse_url) == {"A": (10, 1)}
    assert http.get(f"{warehouse_url}/shipments/o1").status_code == 404


def test_insufficient_stock_is_409_and_changes_nothing(http, warehouse_url):
    set_stock(http, warehouse_url, {"A": 10, "B": 1})

    response = ship(http, warehouse_url, "o1", {"A": 1, "B": 2})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "insufficient_stock"
    assert by_sku(http, warehouse_url) == {"A": (10, 1), "B": (1, 1)}
    assert http.get(f"{warehouse_url}/_control/shipments").json()["count"] == 0


def test_concurrent_orders_across_processes_never_oversell(http, warehouse_url, warehouse_db):
    set_stock(http, warehouse_url, {"LAST": 5})
    with serve_in_process("warehouse", warehouse_db) as other_url:
        urls = [warehouse_url, other_url] * 10
        barrier = threading.Barrier(len(urls))

        def order(index: int) -> requests.Response:
            barrier.wait()
            return ship(requests, urls[index], f"order-{index}", {"LAST": 1})

        with ThreadPoolExecutor(len(urls)) as pool:
            responses = list(pool.map(order, range(len(urls))))

    assert sorted(r.status_code for r in responses) == [201] * 5 + [409] * 15
    assert by_sku(http, warehouse_url) == {"LAST": (0, 6)}
    versions = sorted(r.json()["lines"][0]["version"] for r in responses if r.status_code == 201)
    assert versions == [2, 3, 4, 5, 6]


def test_concurrent_pushes_of_one_order_ship_it_once(http, warehouse_url, warehouse_db):
    set_stock(http, warehouse_url, {"A": 100})
    with serve_in_process("warehouse", warehouse_db) as other_url:
        urls = [warehouse_url, other_url] * 8
        barrier = threading.Barrier(len(urls))

        def push(url: str) -> requests.Response:
            barrier.wait()
            return ship(requests, url, "same-order", {"A": 7})

        with ThreadPoolExecutor(len(urls)) as pool:
            responses = list(pool.map(push, urls))

    assert sorted(r.status_code for r in responses) == [200] * 15 + [201]
    assert len({r.json()["shipment_id"] for r in responses}) == 1
    assert by_sku(http, warehouse_url) == {"A": (93, 2)}


def test_injected_errors_change_nothing_and_spare_shipment_lookup(http, warehouse_url):
    # given
    set_stock(http, warehouse_url, {"A": 10})
    ship(http, warehouse_url, "before", {"A": 1})
    configure(http, warehouse_url, error_rate=1)

    # when
    stock = http.get(f"{warehouse_url}/stock")
    shipment = ship(http, warehouse_url, "during", {"A": 1})
    lookup = http.get(f"{warehouse_url}/shipments/before")

    # then
    assert (stock.status_code, stock.json()["error"]["code"]) == (503, "service_unavailable")
    assert shipment.status_code == 503
    assert lookup.status_code == 200
    configure(http, warehouse_url, error_rate=0)
    assert by_sku(http, warehouse_url) == {"A": (9, 2)}
    assert http.get(f"{warehouse_url}/shipments/during").status_code == 404


def test_error_injection_replays_after_the_seed_is_set_again(http, warehouse_url):
    def statuses() -> list[int]:
        configure(http, warehouse_url, error_rate=0.5, seed=3)
        return [http.get(f"{warehouse_url}/stock").status_code for _ in range(30)]

    first, second = statuses(), statuses()

    assert first == second
    assert set(first) == {200, 503}


def test_tick_is_deterministic_and_versions_what_it_changes(http, tmp_path: Path):
    stock = {f"S{n:03d}": n % 5 for n in range(300)}
    tick = {"restock_rate": 0.2, "shrink_rate": 0.3, "max_restock": 10, "seed": 11}
    runs = []
    for name in ("one", "two"):
        with serve(warehouse.create_app(str(tmp_path / f"{name}.sqlite3"))) as url:
            set_stock(http, url, stock)
            answer = http.post(f"{url}/_control/tick", json=tick).json()
            runs.append((answer, by_sku(http, url)))

    (answer, after), (other_answer, other_after) = runs
    assert (answer, after) == (other_answer, other_after)
    assert answer["tick"] == 1
    changed = {sku for sku, (on_hand, version) in after.items() if version == 2}
    assert len(changed) == answer["changed"] == answer["restocked"] + answer["shrunk"]
    assert answer["restocked"] > 0
    assert answer["shrunk"] > 0
    for sku in stock:
        delta = after[sku][0] - stock[sku]
        assert (delta != 0) == (sku in changed)
        assert -3 <= delta <= 10


def test_drift_applies_one_tick_per_interval_on_stock_reads(http, warehouse_url):
    # given
    set_stock(http, warehouse_url, {"A": 1, "B": 2})
    configure(http, warehouse_url, drift_interval_s=0.2, restock_rate=1, shrink_rate=0)

    # when the first read starts the clock
    assert by_sku(http, warehouse_url) == {"A": (1, 1), "B": (2, 1)}

    # then a later read finds both SKUs restocked, by one tick
    deadline = time.monotonic() + 5
    while (now := by_sku(http, warehouse_url)) == {"A": (1, 1), "B": (2, 1)}:
        assert time.monotonic() < deadline, "stock never drifted"
    assert {sku: version for sku, (_, version) in now.items()} == {"A": 2, "B": 2}
    assert 2 <= now["A"][0] <= 51
    assert 3 <= now["B"][0] <= 52


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 10_001}, {"limit": "many"}, {"limit": "1.5"}]
)
def test_bad_page_parameters_are_400(http, warehouse_url, params):
    response = http.get(f"{warehouse_url}/stock", params=params)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    "body",
    [
        {"order_id": "o1", "lines": []},
        {"order_id": "o1", "lines": [{"sku": "A", "quantity": 0}]},
        {"order_id": "o1", "lines": [{"sku": "A", "quantity": "1"}]},
        {"order_id": "o1", "lines": [{"sku": "A", "quantity": True}]},
        {"order_id": "o1", "lines": [{"sku": "A", "quantity": 2**64}]},
        {"order_id": "o1", "lines": [{"sku": "", "quantity": 1}]},
        {"order_id": "o1", "lines": [{"sku": "A"}]},
        {"order_id": "o1", "lines": "A"},
        {"order_id": None, "lines": [{"sku": "A", "quantity": 1}]},
        {"order_id": 1.5, "lines": [{"sku": "A", "quantity": 1}]},
        {"order_id": "a/b", "lines": [{"sku": "A", "quantity": 1}]},
        {"lines": [{"sku": "A", "quantity": 1}]},
        [1, 2],
    ],
)
def test_bad_shipments_are_400_and_change_nothing(http, warehouse_url, body):
    set_stock(http, warehouse_url, {"A": 5})

    response = http.post(f"{warehouse_url}/shipments", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert by_sku(http, warehouse_url) == {"A": (5, 1)}


@pytest.mark.parametrize(
    "body",
    [
        {"items": [{"sku": "A", "on_hand": -1}]},
        {"items": [{"sku": "A", "on_hand": 1.0}]},
        {"items": [{"sku": "A", "on_hand": 2**63}]},
        {"items": [{"sku": 5, "on_hand": 1}]},
        {"items": [{"sku": "A"}]},
        {"items": {"A": 1}},
        {"stock": []},
    ],
)
def test_bad_stock_uploads_are_400_and_change_nothing(http, warehouse_url, body):
    response = http.put(f"{warehouse_url}/_control/stock", json=body)

    assert response.status_code == 400
    assert all_stock(http, warehouse_url) == []


@pytest.mark.parametrize(
    "body",
    [
        '{"error_rate": 2}',
        '{"latency_ms": -5}',
        '{"latency_ms": 1e100}',
        '{"max_restock": 0}',
        '{"drift_interval_s": "1"}',
        '{"drift_interval_s": NaN}',
        '{"drift_interval_s": Infinity}',
        '{"x": 1}',
    ],
)
def test_invalid_config_is_rejected(http, warehouse_url, body):
    response = http.put(f"{warehouse_url}/_control/config", data=body)

    assert response.status_code == 400
    assert http.get(f"{warehouse_url}/_control/config").json() == warehouse.DEFAULT_CONFIG


def test_malformed_json_and_routing_errors_are_json(http, warehouse_url):
    malformed = http.post(f"{warehouse_url}/shipments", data=b"\xff{")
    missing = http.get(f"{warehouse_url}/nowhere")
    wrong_method = http.delete(f"{warehouse_url}/stock")

    assert (malformed.status_code, malformed.json()["error"]["code"]) == (400, "invalid_request")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (
        405,
        "method_not_allowed",
    )


def test_latency_delays_stock_reads(http, warehouse_url):
    configure(http, warehouse_url, latency_ms=250)

    started = time.monotonic()
    response = http.get(f"{warehouse_url}/stock")

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.25


def test_reset_clears_everything_and_restores_the_defaults(http, tmp_path: Path):
    app = warehouse.create_app(str(tmp_path / "w.sqlite3"), defaults={"latency_ms": 5})
    with serve(app) as url:
        # given
        set_stock(http, url, {"A": 3})
        ship(http, url, "o1", {"A": 1})
        configure(http, url, error_rate=0.5, latency_ms=0)
        http.post(f"{url}/_control/tick", json={})

        # when
        reset = http.post(f"{url}/_control/reset")

        # then
        assert reset.status_code == 200
        assert http.get(f"{url}/_control/config").json() == warehouse.DEFAULT_CONFIG | {
            "latency_ms": 5
        }
        assert all_stock(http, url) == []
        assert http.get(f"{url}/_control/shipments").json() == {"count": 0, "results": []}
        assert http.post(f"{url}/_control/tick", json={}).json()["tick"] == 1


def test_health(http, warehouse_url):
    response = http.get(f"{warehouse_url}/health")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_served_overrides_replace_the_on_hand_the_snapshot_serves(http, warehouse_url):
    http.put(
        f"{warehouse_url}/_control/stock",
        json={"items": [{"sku": "A", "on_hand": 5}, {"sku": "B", "on_hand": 5}]},
    )

    http.put(
        f"{warehouse_url}/_control/served_overrides",
        json={"items": [{"sku": "A", "on_hand": -3}, {"sku": "B", "on_hand": "lots"}]},
    )

    page = http.get(f"{warehouse_url}/stock").json()["results"]
    assert [(r["sku"], r["on_hand"]) for r in page] == [("A", -3), ("B", "lots")]
    http.post(f"{warehouse_url}/_control/reset")
    http.put(f"{warehouse_url}/_control/stock", json={"items": [{"sku": "A", "on_hand": 5}]})
    assert http.get(f"{warehouse_url}/stock").json()["results"][0]["on_hand"] == 5


def test_a_cancelled_order_is_never_shipped_and_a_shipped_one_cannot_be_cancelled(
    http, warehouse_url
):
    http.put(f"{warehouse_url}/_control/stock", json={"items": [{"sku": "A", "on_hand": 5}]})
    line = [{"sku": "A", "quantity": 1}]

    # a cancelled order: the cancel is idempotent, and a push is refused from then on
    first = http.post(f"{warehouse_url}/shipments/o-1/cancel")
    again = http.post(f"{warehouse_url}/shipments/o-1/cancel")
    pushed = http.post(f"{warehouse_url}/shipments", json={"order_id": "o-1", "lines": line})
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json() == {"order_id": "o-1", "status": "cancelled"}
    assert (pushed.status_code, pushed.json()["error"]["code"]) == (409, "order_cancelled")

    # a shipped order: too late, and the answer carries the shipment
    shipped = http.post(f"{warehouse_url}/shipments", json={"order_id": "o-2", "lines": line})
    late = http.post(f"{warehouse_url}/shipments/o-2/cancel")
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "already_shipped"
    assert late.json()["error"]["details"]["shipment"] == shipped.json()

    # every shipment, paged
    page = http.get(f"{warehouse_url}/shipments", params={"limit": 10}).json()
    assert [s["order_id"] for s in page["results"]] == ["o-2"] and page["next_after"] is None


def test_a_batch_of_shipments_ships_or_refuses_each_on_its_own(http, warehouse_url):
    http.put(
        f"{warehouse_url}/_control/stock",
        json={"items": [{"sku": "A", "on_hand": 3}, {"sku": "B", "on_hand": 1}]},
    )
    http.post(f"{warehouse_url}/shipments/o-cancelled/cancel")
    batch = [
        {"order_id": "o-1", "lines": [{"sku": "A", "quantity": 2}]},
        {"order_id": "o-2", "lines": [{"sku": "B", "quantity": 5}]},  # not enough
        {"order_id": "o-3", "lines": [{"sku": "Z", "quantity": 1}]},  # unknown
        {"order_id": "o-cancelled", "lines": [{"sku": "A", "quantity": 1}]},
        {"order_id": "o-4", "lines": [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 1}]},
    ]

    first = http.post(f"{warehouse_url}/shipments/batch", json={"shipments": batch}).json()
    again = http.post(f"{warehouse_url}/shipments/batch", json={"shipments": batch}).json()

    outcome = [
        (r["order_id"], r["status"], r.get("error", {}).get("code")) for r in first["results"]
    ]
    assert outcome == [
        ("o-1", "shipped", None),
        ("o-2", "refused", "insufficient_stock"),
        ("o-3", "refused", "unknown_sku"),
        ("o-cancelled", "refused", "order_cancelled"),
        ("o-4", "shipped", None),
    ]
    # idempotent per order: the same shipments answered, nothing shipped twice
    assert [r.get("shipment") for r in again["results"]] == [
        r.get("shipment") for r in first["results"]
    ]
    stock = {r["sku"]: r["on_hand"] for r in http.get(f"{warehouse_url}/stock").json()["results"]}
    assert stock == {"A": 0, "B": 0}
    assert http.post(f"{warehouse_url}/shipments/batch", json={"shipments": []}).status_code == 400


def test_a_forced_status_does_nothing_and_applies_to_its_order_only(http, warehouse_url):
    # given
    set_stock(http, warehouse_url, {"A": 10})
    fail_next(http, warehouse_url, kind="shipment", status=409, times=2, order_id="o-1")
    fail_next(http, warehouse_url, kind="stock", status=500)

    # when
    answers = [
        ship(http, warehouse_url, "o-2", {"A": 1}),
        ship(http, warehouse_url, "o-1", {"A": 1}),
        ship(http, warehouse_url, "o-1", {"A": 1}),
        ship(http, warehouse_url, "o-1", {"A": 1}),
        http.get(f"{warehouse_url}/stock"),
        http.get(f"{warehouse_url}/stock"),
    ]

    # then
    assert [r.status_code for r in answers] == [201, 409, 409, 201, 500, 200]
    assert [answers[n].json()["error"]["code"] for n in (1, 4)] == [
        "forced_error",
        "service_unavailable",
    ]
    assert shipped(http, warehouse_url) == ["o-2", "o-1"]
    assert answers[5].json()["results"][0]["on_hand"] == 8


def test_lookups_and_cancels_take_forced_answers_too(http, warehouse_url):
    set_stock(http, warehouse_url, {"A": 10})
    ship(http, warehouse_url, "o-1", {"A": 1})
    fail_next(http, warehouse_url, kind="get_shipment", status=404, order_id=1)
    fail_next(http, warehouse_url, kind="list_shipments", status=429)
    fail_next(http, warehouse_url, kind="cancel", status=502, order_id="o-2")

    assert http.get(f"{warehouse_url}/shipments/o-1").status_code == 200  # another order
    assert http.get(f"{warehouse_url}/shipments/1").status_code == 404
    assert http.get(f"{warehouse_url}/shipments").status_code == 429
    assert http.post(f"{warehouse_url}/shipments/o-2/cancel").status_code == 502
    assert ship(http, warehouse_url, "o-2", {"A": 1}).status_code == 201  # never cancelled


def test_a_hang_ships_nothing_and_answers_nothing_in_time(http, warehouse_url):
    # given
    set_stock(http, warehouse_url, {"A": 10})
    configure(http, warehouse_url, hang_ms=800)
    fail_next(http, warehouse_url, kind="shipment", mode="hang")

    # when
    with pytest.raises(requests.ReadTimeout):
        ship(requests, warehouse_url, "o-1", {"A": 1}, timeout=(5, READ_TIMEOUT_S))

    # then
    assert shipped(http, warehouse_url) == []

    # and a client that waits out hang_ms gets a 503, a batch hanging alike
    configure(http, warehouse_url, hang_ms=200)
    fail_next(http, warehouse_url, kind="batch", mode="hang")
    started = time.monotonic()
    late = ship_batch(http, warehouse_url, ["o-1", "o-2"], timeout=5)
    assert time.monotonic() - started >= 0.2
    assert (late.status_code, late.json()["error"]["code"]) == (503, "service_unavailable")
    assert shipped(http, warehouse_url) == []
    assert by_sku(http, warehouse_url) == {"A": (10, 1)}


def test_drip_ships_then_sends_the_answer_a_byte_at_a_time(http, warehouse_url):
    # given
    set_stock(http, warehouse_url, {"A": 10})
    configure(http, warehouse_url, drip_interval_ms=8)
    fail_next(http, warehouse_url, kind="shipment", mode="drip")

    # when
    read = read_byte_by_byte(ship, requests, warehouse_url, "o-1", {"A": 1})

    # then the client never waited past its read timeout, yet the answer took far longer
    assert read.response.status_code == 201
    assert read.longest_gap_s < READ_TIMEOUT_S
    assert read.total_s > 2 * READ_TIMEOUT_S
    assert read.headers_after_s < read.total_s / 4
    assert json.loads(read.body) == http.get(f"{warehouse_url}/shipments/o-1").json()


def test_a_lost_answer_comes_after_timeout_delay_ms_and_the_shipment_is_made(http, warehouse_url):
    # given
    set_stock(http, warehouse_url, {"A": 10})
    configure(http, warehouse_url, timeout_delay_ms=400)
    fail_next(http, warehouse_url, kind="shipment", mode="lost")
    fail_next(http, warehouse_url, kind="cancel", mode="lost")

    # when the caller gives up first
    with pytest.raises(requests.ReadTimeout):
        ship(requests, warehouse_url, "o-1", {"A": 1}, timeout=(5, 0.2))

    # then the shipment was made
    deadline = time.monotonic() + 5
    while shipped(http, warehouse_url) != ["o-1"]:
        assert time.monotonic() < deadline, "the lost shipment was never made"

    # and a patient caller gets the real answer, late
    started = time.monotonic()
    cancelled = http.post(f"{warehouse_url}/shipments/o-2/cancel", timeout=5)
    assert time.monotonic() - started >= 0.4
    assert cancelled.json() == {"order_id": "o-2", "status": "cancelled"}


def batch_flaw(body: bytes, size: int) -> str:
    """What is wrong with a batch answer to `size` shipments ("none": nothing)."""
    value = json.loads(body)
    if not isinstance(value, dict):
        return "not an object"
    results = value.get("results")
    if not isinstance(results, list):
        return "results not a list"
    if len(results) != size:
        return "wrong length"
    if not all(isinstance(r, dict) for r in results):
        return "a result not an object"
    return "none"


def test_a_malformed_batch_answer_ships_everything_the_client_cannot_read(http, warehouse_url):
    # given
    set_stock(http, warehouse_url, {"A": 1000})
    flaws, odd_results = set(), []

    # when batches are answered malformed under seed after seed
    for seed in range(20):
        configure(http, warehouse_url, seed=seed)
        fail_next(http, warehouse_url, kind="batch", mode="malformed")
        orders = [f"o-{seed}-{n}" for n in range(3)]
        response = ship_batch(http, warehouse_url, orders)
        assert response.status_code == 200
        flaws.add(batch_flaw(response.content, 3))
        results = response.json().get("results") if response.text.startswith("{") else None
        if isinstance(results, list):
            odd_results += [r for r in results if not isinstance(r, dict)]
        assert shipped(http, warehouse_url)[-3:] == orders

    # then every flaw comes up, a non-object result among the others included
    assert flaws == {
        "not an object",
        "results not a list",
        "wrong length",
        "a result not an object",
    }
    assert set(odd_results) == {"shipped"}


def test_a_malformed_answer_to_a_single_request_is_unusable(http, warehouse_url):
    set_stock(http, warehouse_url, {"A": 100})
    bodies = set()

    for seed in range(20):
        configure(http, warehouse_url, seed=seed)
        fail_next(http, warehouse_url, kind="shipment", mode="malformed")
        response = ship(http, warehouse_url, f"o-{seed}", {"A": 1})
        assert response.status_code == 200
        truncated = response.content.startswith(b'{"shipment_id":"sh_')
        bodies.add("truncated" if truncated else response.text)

    assert bodies == {"<html>oops", "[]", '{"unexpected": true}', "truncated"}
    assert len(shipped(http, warehouse_url)) == 20


def test_max_batch_refuses_a_larger_batch_with_413_and_ships_nothing(http, warehouse_url):
    # given
    set_stock(http, warehouse_url, {"A": 10})
    configure(http, warehouse_url, max_batch=2)

    # when
    refused = ship_batch(http, warehouse_url, ["o-1", "o-2", "o-3"])
    accepted = ship_batch(http, warehouse_url, ["o-4", "o-5"])

    # then
    assert (refused.status_code, refused.json()["error"]["code"]) == (413, "payload_too_large")
    assert accepted.status_code == 200
    assert shipped(http, warehouse_url) == ["o-4", "o-5"]
    configure(http, warehouse_url, max_batch=0)
    assert ship_batch(http, warehouse_url, ["o-1", "o-2", "o-3"]).status_code == 200
    too_many = ship_batch(http, warehouse_url, [f"x-{n}" for n in range(warehouse.MAX_BATCH + 1)])
    assert too_many.status_code == 400


def test_an_outage_answers_503_to_every_business_request_and_ships_nothing(http, warehouse_url):
    set_stock(http, warehouse_url, {"A": 10})
    ship(http, warehouse_url, "before", {"A": 1})
    configure(http, warehouse_url, outage=True)

    answers = [
        http.get(f"{warehouse_url}/stock"),
        ship(http, warehouse_url, "o-1", {"A": 1}),
        ship_batch(http, warehouse_url, ["o-2"]),
        http.post(f"{warehouse_url}/shipments/o-3/cancel"),
        http.get(f"{warehouse_url}/shipments/before"),
        http.get(f"{warehouse_url}/shipments"),
    ]

    assert [(r.status_code, r.json()["error"]["code"]) for r in answers] == [
        (503, "service_unavailable")
    ] * 6
    assert http.get(f"{warehouse_url}/health").status_code == 200
    configure(http, warehouse_url, outage=False)
    assert shipped(http, warehouse_url) == ["before"]
    assert ship(http, warehouse_url, "o-3", {"A": 1}).status_code == 201  # never cancelled


def test_fault_rates_replay_the_same_answers_after_the_seed_is_set_again(http, warehouse_url):
    # hang_ms 0 makes a hang an instant 503; drip and lost without delay answer normally.
    rates = {
        "seed": 5,
        "error_rate": 0.1,
        "hang_rate": 0.15,
        "lost_rate": 0.1,
        "drip_rate": 0.1,
        "malformed_rate": 0.2,
        "hang_ms": 0,
        "drip_interval_ms": 0,
        "timeout_delay_ms": 0,
    }

    def run() -> list[tuple[int, bytes]]:
        http.post(f"{warehouse_url}/_control/reset")
        set_stock(http, warehouse_url, {"A": 100})
        configure(http, warehouse_url, **rates)
        answers = []
        for n in range(12):
            for response in (
                http.get(f"{warehouse_url}/stock"),
                ship(http, warehouse_url, f"o-{n}", {"A": 1}),
                ship_batch(http, warehouse_url, [f"b-{n}"]),
                http.post(f"{warehouse_url}/shipments/c-{n}/cancel"),
            ):
                answers.append((response.status_code, response.content[:12]))
        return answers

    first, second = run(), run()

    assert first == second
    assert {b"<html>oops", b"[]"} & {body for _, body in first}
    assert {status for status, _ in first} == {200, 201, 503}


def test_reset_clears_the_forced_answers(http, warehouse_url):
    fail_next(http, warehouse_url, kind="stock", mode="hang")
    fail_next(http, warehouse_url, kind="get_shipment", status=500, times=3)

    http.post(f"{warehouse_url}/_control/reset")

    assert http.get(f"{warehouse_url}/stock", timeout=5).status_code == 200
    assert http.get(f"{warehouse_url}/shipments/o-1", timeout=5).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "shipment", "status": 500, "mode": "hang"},
        {"kind": "shipment"},
        {"kind": "shipment", "mode": "explode"},
        {"kind": "shipment", "status": 302},
        {"kind": "shipment", "status": "500"},
        {"kind": "refund", "status": 500},
        {"kind": "stock", "status": 500, "order_id": "o-1"},
        {"kind": "shipment", "status": 500, "order_id": "a/b"},
        {"kind": "shipment", "status": 500, "order_id": True},
        {"kind": "shipment", "status": 500, "times": 0},
        {"kind": "shipment", "status": 500, "key": "o-1"},
    ],
)
def test_bad_forced_answers_are_400_and_queue_nothing(http, warehouse_url, body):
    response = http.post(f"{warehouse_url}/_control/fail_next", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    set_stock(http, warehouse_url, {"A": 1})
    assert ship(http, warehouse_url, "o-1", {"A": 1}, timeout=5).status_code == 201


@pytest.mark.parametrize(
    "changes",
    [
        {"hang_rate": 2},
        {"lost_rate": -0.1},
        {"drip_rate": "0.5"},
        {"malformed_rate": None},
        {"max_batch": -1},
        {"max_batch": warehouse.MAX_BATCH + 1},
        {"outage": 1},
        {"hang_ms": 1.5},
        {"drip_interval_ms": -1},
        {"timeout_delay_ms": "3000"},
        {"transient_rate": 0.5},  # the warehouse has none
    ],
)
def test_invalid_fault_config_is_rejected_and_unchanged(http, warehouse_url, changes):
    response = http.put(f"{warehouse_url}/_control/config", json=changes)

    assert response.status_code == 400
    assert http.get(f"{warehouse_url}/_control/config").json() == warehouse.DEFAULT_CONFIG


def test_the_test_side_handle_forces_statuses_and_modes(http, warehouse_sim):
    # given
    warehouse_sim.set_stock({"A": 10})
    warehouse_sim.fail_next("shipment", 503, order_id=7)
    warehouse_sim.fail_next("batch", mode="malformed", times=2)

    # when
    pushes = [ship(http, warehouse_sim.url, order_id, {"A": 1}) for order_id in (8, 7, 7)]
    batches = [ship_batch(http, warehouse_sim.url, [f"b-{n}"]) for n in range(3)]

    # then
    assert [r.status_code for r in pushes] == [201, 503, 201]
    assert [batch_flaw(r.content, 1) == "none" for r in batches] == [False, False, True]
    assert warehouse_sim.shipments()["count"] == 5
    with pytest.raises(ValueError):
        warehouse_sim.fail_next("stock", 500, mode="drip")
