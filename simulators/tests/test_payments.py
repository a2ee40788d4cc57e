"""The payment simulator over real HTTP: idempotent charges, refunds, injected failures."""

import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from simulators import payments
from simulators.tests.clients import READ_TIMEOUT_S, read_byte_by_byte
from simulators.tests.servers import serve, serve_in_process


def charge(
    http: Any,  # a Session, or the requests module for calls from several threads
    url: str,
    key: str,
    amount: str = "12.34",
    currency: str = "USD",
    **kwargs: Any,
) -> requests.Response:
    body = {"amount": amount, "currency": currency, "idempotency_key": key}
    return http.post(f"{url}/charges", json=body, **kwargs)


def configure(http: requests.Session, url: str, **changes: Any) -> None:
    response = http.put(f"{url}/_control/config", json=changes)
    assert response.status_code == 200, response.text


def stats(http: requests.Session, url: str, **params: str) -> dict[str, Any]:
    return http.get(f"{url}/_control/stats", params=params).json()


def fail_next(http: requests.Session, url: str, **body: Any) -> None:
    response = http.post(f"{url}/_control/fail_next", json=body)
    assert response.status_code == 200, response.text


def stored(http: requests.Session, url: str, key: str) -> dict[str, Any] | None:
    response = http.get(f"{url}/_control/charges/{key}")
    return response.json() if response.status_code == 200 else None


def unusable(body: bytes) -> str:
    """Which kind of body a client cannot use this is (or "charge": it can)."""
    try:
        value = json.loads(body)
    except ValueError:
        return "truncated" if body.startswith(b'{"id":"ch_') else "not json"
    if not isinstance(value, dict):
        return "not an object"
    return "charge" if {"id", "status"} <= set(value) else "fields missing"


def test_new_charge_is_captured_and_can_be_read_back(http, payment_url):
    response = http.post(
        f"{payment_url}/charges",
        json={"amount": "12.30", "currency": "usd", "idempotency_key": "k1", "reference": "o-7"},
    )

    assert response.status_code == 201
    created = response.json()
    assert created["id"].startswith("ch_")
    assert created | {"id": None, "created_at": None} == {
        "id": None,
        "idempotency_key": "k1",
        "amount": "12.30",
        "currency": "USD",
        "status": "captured",
        "decline_reason": None,
        "reference": "o-7",
        "created_at": None,
        "refunded_at": None,
    }
    assert created["created_at"].endswith("Z")
    fetched = http.get(f"{payment_url}/charges/k1")
    assert fetched.status_code == 200
    assert fetched.json() == created


def test_same_key_never_charges_twice(http, payment_url):
    first = charge(http, payment_url, "k1")

    again = charge(http, payment_url, "k1", currency="usd")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert stats(http, payment_url) == {
        "charges": 1,
        "captured": 1,
        "declined": 0,
        "refunded": 0,
        "charge_requests": 2,
        "by_key": {"k1": {"requests": 2, "status": "captured"}},
    }


@pytest.mark.parametrize(("amount", "currency"), [("99.99", "USD"), ("12.34", "EUR")])
def test_same_key_with_other_amount_or_currency_is_a_conflict(http, payment_url, amount, currency):
    charge(http, payment_url, "k1")

    response = charge(http, payment_url, "k1", amount=amount, currency=currency)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert http.get(f"{payment_url}/charges/k1").json()["amount"] == "12.34"


def test_decline_rate_one_declines_with_a_reason(http, payment_url):
    configure(http, payment_url, decline_rate=1)

    response = charge(http, payment_url, "k1")

    assert response.status_code == 201
    assert response.json()["status"] == "declined"
    assert response.json()["decline_reason"] in payments.DECLINE_REASONS


def test_injected_error_stores_nothing_but_counts_the_attempt(http, payment_url):
    # given
    configure(http, payment_url, error_rate=1)

    # when
    failed = charge(http, payment_url, "k1")

    # then
    assert failed.status_code == 503
    assert failed.json()["error"]["code"] == "service_unavailable"
    assert http.get(f"{payment_url}/charges/k1").status_code == 404
    assert stats(http, payment_url, key="k1")["by_key"] == {"k1": {"requests": 1, "status": None}}

    # and a retry once the outage is over charges once
    configure(http, payment_url, error_rate=0)
    retried = charge(http, payment_url, "k1")
    assert retried.status_code == 201
    assert stats(http, payment_url)["by_key"] == {"k1": {"requests": 2, "status": "captured"}}


def test_an_existing_charge_is_answered_even_during_an_outage(http, payment_url):
    created = charge(http, payment_url, "k1").json()
    configure(http, payment_url, error_rate=1)

    response = charge(http, payment_url, "k1")

    assert response.status_code == 200
    assert response.json() == created


def test_timeout_stores_the_charge_and_answers_too_late(http, payment_url):
    # given
    configure(http, payment_url, timeout_delay_ms=1500)
    http.post(f"{payment_url}/_control/script", json={"outcomes": ["timeout"]})

    # when
    with pytest.raises(requests.ReadTimeout):
        charge(requests, payment_url, "k1", timeout=(5, 0.3))

    # then the charge exists and a retry with the key answers it at once
    deadline = time.monotonic() + 5
    while (lookup := http.get(f"{payment_url}/charges/k1")).status_code == 404:
        assert time.monotonic() < deadline, "the timed-out charge was never stored"
    assert lookup.json()["status"] == "captured"
    retried = charge(http, payment_url, "k1", timeout=(5, 1.0))
    assert retried.status_code == 200
    assert retried.json()["id"] == lookup.json()["id"]
    assert stats(http, payment_url)["charges"] == 1


def test_latency_delays_every_charge_endpoint(http, payment_url):
    configure(http, payment_url, latency_ms=300)

    started = time.monotonic()
    response = http.get(f"{payment_url}/charges/unknown")
    elapsed = time.monotonic() - started

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert elapsed >= 0.3


def test_script_overrides_the_rates_one_outcome_per_new_key(http, payment_url):
    # given
    configure(http, payment_url, decline_rate=1)
    pushed = http.post(
        f"{payment_url}/_control/script", json={"outcomes": ["capture", "error", "decline"]}
    )
    assert pushed.json() == {"pending": ["capture", "error", "decline"]}

    # when
    first = charge(http, payment_url, "k1")
    repeat = charge(http, payment_url, "k1")  # known key: consumes nothing
    second = charge(http, payment_url, "k2")
    third = charge(http, payment_url, "k2")
    after_script = charge(http, payment_url, "k3")

    # then
    assert (first.status_code, first.json()["status"]) == (201, "captured")
    assert (repeat.status_code, repeat.json()["status"]) == (200, "captured")
    assert second.status_code == 503
    assert (third.status_code, third.json()["status"]) == (201, "declined")
    assert after_script.json()["status"] == "declined"  # back to the rates
    assert http.post(f"{payment_url}/_control/script", json={"outcomes": []}).json() == {
        "pending": []
    }


def test_outcomes_are_reproducible_across_processes(http, payment_url, tmp_path: Path):
    rates = {"decline_rate": 0.5, "error_rate": 0.2, "timeout_rate": 0, "seed": 42}

    def run(url: str) -> list[tuple[int, str | None]]:
        configure(http, url, **rates)
        results = []
        for index in range(30):
            for _attempt in range(10):
                response = charge(http, url, f"order-{index}")
                results.append((response.status_code, response.json().get("status")))
                if response.status_code != 503:
                    break
        return results

    with serve_in_process("payments", str(tmp_path / "other.sqlite3")) as other_url:
        here, there = run(payment_url), run(other_url)

    assert here == there
    assert set(here) == {(201, "captured"), (201, "declined"), (503, None)}


def test_concurrent_attempts_with_one_key_across_processes_charge_once(
    http, payment_url, payment_db
):
    with serve_in_process("payments", payment_db) as other_url:
        urls = [payment_url, other_url] * 10
        barrier = threading.Barrier(len(urls))

        def attempt(url: str) -> requests.Response:
            barrier.wait()
            return charge(requests, url, "shared-key")

        with ThreadPoolExecutor(len(urls)) as pool:
            responses = list(pool.map(attempt, urls))

    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert stats(http, payment_url)["by_key"] == {
        "shared-key": {"requests": 20, "status": "captured"}
    }


def test_script_is_shared_between_processes(http, payment_url, payment_db):
    with serve_in_process("payments", payment_db) as other_url:
        http.post(f"{payment_url}/_control/script", json={"outcomes": ["decline", "capture"]})

        first = charge(http, other_url, "k1")
        second = charge(http, payment_url, "k2")

    assert first.json()["status"] == "declined"
    assert second.json()["status"] == "captured"


def test_refund_is_idempotent_and_only_for_captured_charges(http, payment_url):
    charge(http, payment_url, "paid")
    http.post(f"{payment_url}/_control/script", json={"outcomes": ["decline"]})
    charge(http, payment_url, "declined")

    refunded = http.post(f"{payment_url}/charges/paid/refund")
    again = http.post(f"{payment_url}/charges/paid/refund")
    not_refundable = http.post(f"{payment_url}/charges/declined/refund")
    unknown = http.post(f"{payment_url}/charges/nope/refund")

    assert refunded.status_code == 200
    assert refunded.json()["status"] == "refunded"
    assert refunded.json()["refunded_at"] is not None
    assert (again.status_code, again.json()) == (200, refunded.json())
    assert not_refundable.status_code == 409
    assert not_refundable.json()["error"]["code"] == "not_refundable"
    assert unknown.status_code == 404
    assert stats(http, payment_url)["refunded"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"amount": "0", "currency": "USD", "idempotency_key": "k"},
        {"amount": "-1.00", "currency": "USD", "idempotency_key": "k"},
        {"amount": "12.345", "currency": "USD", "idempotency_key": "k"},
        {"amount": "abc", "currency": "USD", "idempotency_key": "k"},
        {"amount": "1e3", "currency": "USD", "idempotency_key": "k"},
        {"amount": "\u0661\u0662.00", "currency": "USD", "idempotency_key": "k"},
        {"amount": " 12.34", "currency": "USD", "idempotency_key": "k"},
        {"amount": 12.34, "currency": "USD", "idempotency_key": "k"},
        {"amount": "12.34", "currency": "US", "idempotency_key": "k"},
        {"amount": "12.34", "idempotency_key": "k"},
        {"amount": "12.34", "currency": "USD", "idempotency_key": ""},
        {"amount": "12.34", "currency": "USD", "idempotency_key": "k" * 129},
        {"amount": "12.34", "currency": "USD", "idempotency_key": "a/b"},
        {"amount": "12.34", "currency": "USD", "idempotency_key": 7},
        {"amount": "12.34", "currency": "USD", "idempotency_key": "k", "reference": 7},
        {"amount": "12.34", "currency": "USD", "idempotency_key": "k", "extra": 1},
        ["not", "an", "object"],
    ],
)
def test_bad_charge_requests_are_400_and_change_nothing(http, payment_url, body):
    response = http.post(f"{payment_url}/charges", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert stats(http, payment_url)["charge_requests"] == 0


def test_malformed_json_is_a_400(http, payment_url):
    response = http.post(
        f"{payment_url}/charges", data="{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_routing_errors_are_json(http, payment_url):
    missing = http.get(f"{payment_url}/nowhere")
    wrong_method = http.delete(f"{payment_url}/charges")

    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong_method.headers["Allow"]


@pytest.mark.parametrize(
    "changes",
    [
        {"error_rate": 1.5},
        {"decline_rate": "0.1"},
        {"timeout_rate": -0.1},
        {"latency_ms": -1},
        {"latency_ms": 2**40},
        {"timeout_delay_ms": 1.5},
        {"seed": True},
        {"unknown": 1},
    ],
)
def test_invalid_config_is_rejected_and_unchanged(http, payment_url, changes):
    before = http.get(f"{payment_url}/_control/config").json()

    response = http.put(f"{payment_url}/_control/config", json=changes)

    assert response.status_code == 400
    assert http.get(f"{payment_url}/_control/config").json() == before


def test_config_update_is_partial(http, payment_url):
    response = http.put(f"{payment_url}/_control/config", json={"decline_rate": 0.5, "seed": 9})

    assert response.json() == payments.DEFAULT_CONFIG | {"decline_rate": 0.5, "seed": 9}
    assert http.get(f"{payment_url}/_control/config").json() == response.json()


def test_reset_clears_everything_and_restores_the_defaults(http, tmp_path: Path):
    app = payments.create_app(str(tmp_path / "p.sqlite3"), defaults={"decline_rate": 0.25})
    with serve(app) as url:
        # given
        configure(http, url, decline_rate=1, latency_ms=10)
        charge(http, url, "k1")
        http.post(f"{url}/_control/script", json={"outcomes": ["error"]})

        # when
        reset = http.post(f"{url}/_control/reset")

        # then
        assert reset.status_code == 200
        assert http.get(f"{url}/_control/config").json()["decline_rate"] == 0.25
        assert http.get(f"{url}/_control/config").json()["latency_ms"] == 0
        assert stats(http, url) == {
            "charges": 0,
            "captured": 0,
            "declined": 0,
            "refunded": 0,
            "charge_requests": 0,
            "by_key": {},
        }
        assert http.get(f"{url}/charges/k1").status_code == 404
        assert http.post(f"{url}/_control/script", json={"outcomes": []}).json()["pending"] == []


def test_restart_keeps_config_set_through_control(http, payment_db):
    with serve(payments.create_app(payment_db)) as url:
        configure(http, url, decline_rate=0.7)

    with serve(payments.create_app(payment_db)) as url:
        assert http.get(f"{url}/_control/config").json()["decline_rate"] == 0.7

    with serve(payments.create_app(payment_db, defaults={"decline_rate": 0.1})) as url:
        assert http.get(f"{url}/_control/config").json()["decline_rate"] == 0.1


def test_health(http, payment_url):
    response = http.get(f"{payment_url}/health")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_every_request_is_logged_with_its_kind_and_arrival_time(http, payment_url):
    charge(http, payment_url, "k1")
    http.get(f"{payment_url}/charges/k1")
    http.post(f"{payment_url}/charges/k1/refund")
    http.get(f"{payment_url}/charges/other")
    http.get(f"{payment_url}/_control/charges/k1")  # a test's peek is not a request

    logged = http.get(f"{payment_url}/_control/requests", params={"key": "k1"}).json()["results"]

    assert [r["kind"] for r in logged] == ["charge", "lookup", "refund"]
    assert all(isinstance(r["at"], float) for r in logged)
    assert logged[0]["at"] <= logged[1]["at"] <= logged[2]["at"]
    every = http.get(f"{payment_url}/_control/requests").json()["results"]
    assert [r["idempotency_key"] for r in every] == ["k1", "k1", "k1", "other"]


def test_forced_answers_apply_to_the_next_requests_of_their_kind_and_key(http, payment_url):
    charge(http, payment_url, "k1")
    http.post(f"{payment_url}/_control/fail_next", json={"kind": "lookup", "status": 401})
    http.post(
        f"{payment_url}/_control/fail_next",
        json={"kind": "refund", "status": 403, "times": 2, "key": "k1"},
    )

    lookups = [http.get(f"{payment_url}/charges/k1").status_code for _ in range(2)]
    refunds = [http.post(f"{payment_url}/charges/k1/refund").status_code for _ in range(3)]

    assert lookups == [401, 200]
    assert refunds == [403, 403, 200]
    assert http.get(f"{payment_url}/charges/k1").json()["status"] == "refunded"


def test_a_forced_answer_to_a_charge_stores_nothing(http, payment_url):
    http.post(f"{payment_url}/_control/fail_next", json={"kind": "charge", "status": 429})

    refused = charge(http, payment_url, "k1")

    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "forced_error")
    assert http.get(f"{payment_url}/_control/charges/k1").status_code == 404
    assert charge(http, payment_url, "k1").status_code == 201


def test_a_charge_being_processed_answers_409_to_another_request_with_its_key(http, payment_url):
    # given: charges held at the provider; one is being processed
    configure(http, payment_url, hold_charges=True)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(charge, requests, payment_url, "k1")
        deadline = time.monotonic() + 5
        while not http.get(f"{payment_url}/_control/requests").json()["results"]:
            assert time.monotonic() < deadline, "the first charge never arrived"

        # when: another request with its key arrives meanwhile
        second = charge(http, payment_url, "k1")
        configure(http, payment_url, hold_charges=False)

        # then: 409, and the first one is captured once let go
        assert second.status_code == 409
        assert second.json()["error"]["code"] == "idempotency_key_in_use"
        assert first.result(timeout=10).status_code == 201
    assert charge(http, payment_url, "k1").status_code == 200
    assert stats(http, payment_url)["captured"] == 1


def test_an_outage_answers_503_to_everything_and_stores_nothing(http, payment_url):
    charge(http, payment_url, "before")
    configure(http, payment_url, outage=True)

    answers = [
        charge(http, payment_url, "k1").status_code,
        http.get(f"{payment_url}/charges/before").status_code,
        http.post(f"{payment_url}/charges/before/refund").status_code,
    ]
    configure(http, payment_url, outage=False)

    assert answers == [503, 503, 503]
    assert http.get(f"{payment_url}/_control/charges/k1").status_code == 404
    assert http.get(f"{payment_url}/charges/before").json()["status"] == "captured"
    logged = http.get(f"{payment_url}/_control/requests").json()["results"]
    assert [r["kind"] for r in logged] == ["charge", "charge", "lookup", "refund", "lookup"]


def test_a_script_for_one_key_applies_to_that_key_first(http, payment_url):
    http.post(f"{payment_url}/_control/script", json={"outcomes": ["decline"], "key": "k2"})
    http.post(f"{payment_url}/_control/script", json={"outcomes": ["error"]})

    first = charge(http, payment_url, "k1")  # the any-key script
    second = charge(http, payment_url, "k2")  # its own
    third = charge(http, payment_url, "k1")  # nothing left: the rates (capture)

    assert first.status_code == 503
    assert second.json()["status"] == "declined"
    assert third.json()["status"] == "captured"


def test_a_hang_does_nothing_and_answers_nothing_in_time(http, payment_url):
    # given
    configure(http, payment_url, hang_ms=800)
    fail_next(http, payment_url, kind="charge", mode="hang")

    # when
    with pytest.raises(requests.ReadTimeout):
        charge(requests, payment_url, "k1", timeout=(5, READ_TIMEOUT_S))

    # then nothing is stored, nor counted; the request was seen
    assert stored(http, payment_url, "k1") is None
    assert stats(http, payment_url)["charge_requests"] == 0
    assert [r["kind"] for r in http.get(f"{payment_url}/_control/requests").json()["results"]] == [
        "charge"
    ]

    # and a client that waits out hang_ms gets a 503, a lookup hanging alike
    configure(http, payment_url, hang_ms=200)
    fail_next(http, payment_url, kind="lookup", mode="hang")
    started = time.monotonic()
    late = http.get(f"{payment_url}/charges/k1", timeout=5)
    assert time.monotonic() - started >= 0.2
    assert (late.status_code, late.json()["error"]["code"]) == (503, "service_unavailable")
    assert charge(http, payment_url, "k1").status_code == 201


def test_drip_charges_then_sends_the_answer_a_byte_at_a_time(http, payment_url):
    # given
    configure(http, payment_url, drip_interval_ms=5)
    fail_next(http, payment_url, kind="charge", mode="drip")

    # when
    read = read_byte_by_byte(charge, requests, payment_url, "k1")

    # then the client never waited past its read timeout, yet the answer took far longer
    assert read.response.status_code == 201
    assert read.longest_gap_s < READ_TIMEOUT_S
    assert read.total_s > 2 * READ_TIMEOUT_S
    assert read.headers_after_s < read.total_s / 4  # the status line and headers at once
    assert int(read.response.headers["Content-Length"]) == len(read.body)
    assert json.loads(read.body) == stored(http, payment_url, "k1")


def test_drip_delivers_refusals_and_lookups_too(http, payment_url):
    configure(http, payment_url, drip_interval_ms=0)
    fail_next(http, payment_url, kind="lookup", mode="drip", times=2)
    charge(http, payment_url, "k1")

    found = http.get(f"{payment_url}/charges/k1", timeout=5)
    missing = http.get(f"{payment_url}/charges/nope", timeout=5)

    assert (found.status_code, found.json()) == (200, stored(http, payment_url, "k1"))
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


def test_malformed_answers_are_unusable_but_the_work_is_done(http, payment_url):
    # given
    charge(http, payment_url, "paid")
    seen = set()

    # when lookups are answered malformed under seed after seed
    for seed in range(40):
        configure(http, payment_url, seed=seed)
        fail_next(http, payment_url, kind="lookup", mode="malformed")
        response = http.get(f"{payment_url}/charges/paid")
        assert response.status_code == 200
        seen.add(unusable(response.content))

    # then every kind of unusable body comes up, never the charge
    assert seen == {"not json", "not an object", "fields missing", "truncated"}

    # and a malformed answer to a charge or a refund hides work that was done
    fail_next(http, payment_url, kind="charge", mode="malformed")
    fail_next(http, payment_url, kind="refund", mode="malformed", key="paid")
    answered = charge(http, payment_url, "k2")
    refunded = http.post(f"{payment_url}/charges/paid/refund")
    assert answered.status_code == refunded.status_code == 200
    assert unusable(answered.content) != "charge" and unusable(refunded.content) != "charge"
    assert stored(http, payment_url, "k2")["status"] == "captured"
    assert stored(http, payment_url, "paid")["status"] == "refunded"


def test_lost_answers_come_after_timeout_delay_ms_and_the_work_is_done(http, payment_url):
    # given
    configure(http, payment_url, timeout_delay_ms=400)
    fail_next(http, payment_url, kind="charge", mode="lost")
    fail_next(http, payment_url, kind="refund", mode="lost")

    # when the caller gives up first
    with pytest.raises(requests.ReadTimeout):
        charge(requests, payment_url, "k1", timeout=(5, 0.2))

    # then the charge was made
    deadline = time.monotonic() + 5
    while stored(http, payment_url, "k1") is None:
        assert time.monotonic() < deadline, "the lost charge was never stored"

    # and a patient caller gets the real answer, late
    started = time.monotonic()
    refunded = http.post(f"{payment_url}/charges/k1/refund", timeout=5)
    assert time.monotonic() - started >= 0.4
    assert (refunded.status_code, refunded.json()["status"]) == (200, "refunded")


def test_a_lost_answer_to_a_timed_out_charge_is_one_delay(http, payment_url):
    configure(http, payment_url, timeout_delay_ms=400)
    http.post(f"{payment_url}/_control/script", json={"outcomes": ["timeout"]})
    fail_next(http, payment_url, kind="charge", mode="lost")

    started = time.monotonic()
    response = charge(http, payment_url, "k1", timeout=5)

    assert response.status_code == 201
    assert 0.4 <= time.monotonic() - started < 0.8  # two delays would be 0.8 s


@pytest.mark.parametrize("status", [400, 422])
def test_in_use_status_answers_a_charge_while_another_with_its_key_is_held(
    http, payment_url, status
):
    # given
    configure(http, payment_url, hold_charges=True, in_use_status=status)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(charge, requests, payment_url, "k1")
        deadline = time.monotonic() + 5
        while not http.get(f"{payment_url}/_control/requests").json()["results"]:
            assert time.monotonic() < deadline, "the first charge never arrived"

        # when
        second = charge(http, payment_url, "k1")
        configure(http, payment_url, hold_charges=False)

        # then
        assert (second.status_code, second.json()["error"]["code"]) == (
            status,
            "idempotency_key_in_use",
        )
        assert first.result(timeout=10).status_code == 201
    assert stats(http, payment_url)["captured"] == 1


def test_forced_modes_apply_times_and_to_their_key_only(http, payment_url):
    charge(http, payment_url, "k1")
    charge(http, payment_url, "k2")
    fail_next(http, payment_url, kind="lookup", mode="malformed", times=2, key="k2")

    answers = [
        unusable(http.get(f"{payment_url}/charges/{key}").content)
        for key in ("k1", "k2", "k1", "k2", "k2")
    ]

    assert answers[0] == answers[2] == answers[4] == "charge"
    assert "charge" not in (answers[1], answers[3])


def test_transient_rate_answers_a_listed_status_doing_nothing(http, payment_url):
    configure(http, payment_url, transient_rate=1, transient_statuses=[425, 503])

    answers = [charge(http, payment_url, f"k{n}") for n in range(10)]

    assert {r.status_code for r in answers} == {425, 503}
    assert {r.json()["error"]["code"] for r in answers} == {"forced_error", "service_unavailable"}
    assert stats(http, payment_url)["charges"] == 0
    configure(http, payment_url, transient_rate=0)
    assert charge(http, payment_url, "k1").status_code == 201


def test_fault_rates_replay_the_same_answers_for_a_seed(http, payment_url, tmp_path: Path):
    # hang_ms 0 makes a hang an instant 503; drip and lost without delay answer normally.
    rates = {
        "seed": 7,
        "hang_rate": 0.1,
        "transient_rate": 0.2,
        "lost_rate": 0.1,
        "drip_rate": 0.1,
        "malformed_rate": 0.2,
        "hang_ms": 0,
        "drip_interval_ms": 0,
        "timeout_delay_ms": 0,
    }

    def run(url: str) -> list[tuple[int, str]]:
        configure(http, url, **rates)
        answers = []
        for index in range(15):
            key = f"order-{index}"
            for response in (
                charge(http, url, key),
                http.get(f"{url}/charges/{key}"),
                http.post(f"{url}/charges/{key}/refund"),
                charge(http, url, key),
            ):
                code = response.json()["error"]["code"] if response.status_code >= 400 else ""
                answers.append((response.status_code, code or unusable(response.content)))
        return answers

    with serve_in_process("payments", str(tmp_path / "other.sqlite3")) as other_url:
        here, there = run(payment_url), run(other_url)

    assert here == there
    statuses = {status for status, _ in here}
    assert {408, 425, 429, 503} <= statuses  # transient ones, and hangs
    assert {"charge", "not json", "fields missing"} <= {kind for _, kind in here}


def test_reset_clears_the_forced_answers(http, payment_url):
    fail_next(http, payment_url, kind="charge", mode="hang")
    fail_next(http, payment_url, kind="lookup", status=401, times=3)

    http.post(f"{payment_url}/_control/reset")

    assert charge(http, payment_url, "k1", timeout=5).status_code == 201
    assert http.get(f"{payment_url}/charges/k1", timeout=5).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "charge", "status": 429, "mode": "hang"},
        {"kind": "charge"},
        {"kind": "charge", "mode": "explode"},
        {"kind": "charge", "mode": None},
        {"kind": "charge", "mode": ["hang"]},
        {"kind": "charge", "status": 200},
        {"kind": "capture", "mode": "drip"},
        {"kind": "charge", "mode": "drip", "times": 0},
        {"kind": "charge", "mode": "drip", "key": "a/b"},
    ],
)
def test_bad_forced_answers_are_400_and_queue_nothing(http, payment_url, body):
    response = http.post(f"{payment_url}/_control/fail_next", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert charge(http, payment_url, "k1", timeout=5).status_code == 201


@pytest.mark.parametrize(
    "changes",
    [
        {"hang_rate": 2},
        {"drip_rate": -0.5},
        {"malformed_rate": "0.1"},
        {"lost_rate": True},
        {"transient_rate": 1.01},
        {"transient_statuses": []},
        {"transient_statuses": [429, 200]},
        {"transient_statuses": 429},
        {"in_use_status": 410},
        {"in_use_status": 409.0},
        {"hang_ms": -1},
        {"drip_interval_ms": 0.5},
    ],
)
def test_invalid_fault_config_is_rejected_and_unchanged(http, payment_url, changes):
    response = http.put(f"{payment_url}/_control/config", json=changes)

    assert response.status_code == 400
    assert http.get(f"{payment_url}/_control/config").json() == payments.DEFAULT_CONFIG


def test_a_file_from_before_answer_modes_keeps_its_forced_answers(http, payment_db):
    # given a file whose forced answers were made before there were modes
    payments.create_app(payment_db)
    conn = sqlite3.connect(payment_db, isolation_level=None)
    conn.executescript(
        """
        DROP TABLE forced_answers;
        CREATE TABLE forced_answers (
            position INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind IN ('charge', 'lookup', 'refund')),
            idempotency_key TEXT,
            status INTEGER NOT NULL
        );
        INSERT INTO forced_answers (kind, idempotency_key, status) VALUES ('lookup', NULL, 401);
        """
    )
    conn.close()

    # when
    with serve(payments.create_app(payment_db)) as url:
        fail_next(http, url, kind="lookup", mode="malformed")
        answers = [http.get(f"{url}/charges/k1") for _ in range(3)]

    # then
    assert [r.status_code for r in answers] == [401, 200, 404]
    assert unusable(answers[1].content) != "charge"


def test_the_test_side_handle_forces_statuses_and_modes(http, payment_sim):
    # given
    charge(http, payment_sim.url, "k1")
    payment_sim.fail_next("lookup", 401)
    payment_sim.fail_next("lookup", mode="malformed", key="k1")
    payment_sim.configure(in_use_status=422)

    # when
    answers = [http.get(f"{payment_sim.url}/charges/k1") for _ in range(3)]

    # then the answer forced on the key comes first
    assert [r.status_code for r in answers] == [200, 401, 200]
    assert [unusable(r.content) == "charge" for r in (answers[0], answers[2])] == [False, True]
    with pytest.raises(ValueError):
        payment_sim.fail_next("lookup")
    with pytest.raises(ValueError):
        payment_sim.fail_next("lookup", 401, mode="hang")
