"""The webhook receiver simulator over real HTTP: recording, scripted and injected failures,
late answers, Standard Webhooks signature checks, the control API."""

import base64
import hashlib
import hmac
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from simulators import receiver, wsgi
from simulators.tests.clients import READ_TIMEOUT_S, read_byte_by_byte
from simulators.tests.servers import serve

SECRET = "whsec_" + base64.b64encode(b"a test key of the webhook receiver").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"someone else's key").decode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks signature header value, computed as a sender would."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def deliver(
    http: requests.Session,
    url: str,
    body: bytes = b'{"type": "order.paid"}',
    *,
    hook: str = "orders",
    webhook_id: str = "msg_1",
    secret: str | None = None,
    timestamp: int | None = None,
    **kwargs: Any,
) -> requests.Response:
    """One delivery, signed with `secret` if given."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "content-type": "application/json",
        "user-agent": "orderproj-webhooks/1",
    }
    if secret is not None:
        headers["webhook-signature"] = sign(secret, webhook_id, timestamp, body)
    return http.post(f"{url}/hooks/{hook}", data=body, headers=headers, **kwargs)


def configure(http: requests.Session, url: str, **changes: Any) -> dict[str, Any]:
    response = http.put(f"{url}/_control/config", json=changes)
    assert response.status_code == 200, response.text
    return response.json()


def script(http: requests.Session, url: str, *outcomes: str) -> None:
    response = http.post(f"{url}/_control/script", json={"outcomes": list(outcomes)})
    assert response.status_code == 200, response.text


def received(http: requests.Session, url: str, **params: Any) -> list[dict[str, Any]]:
    response = http.get(f"{url}/_control/received", params=params)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def statuses(http: requests.Session, urls: list[str]) -> list[int]:
    return [deliver(http, url, webhook_id=f"msg_{i}").status_code for i, url in enumerate(urls)]


def test_a_delivery_is_recorded_with_its_headers_and_body(http, receiver_url):
    body = b'{"type": "order.paid", "data": {"order_id": 7, "note": "caf\xc3\xa9"}}'

    response = deliver(http, receiver_url, body, hook="shop-1_orders", webhook_id="msg_abc")

    assert (response.status_code, response.json()) == (200, {"received": True})
    [record] = received(http, receiver_url)
    assert record["id"] >= 1
    assert record["received_at"].endswith("Z")
    assert record | {"id": None, "received_at": None} == {
        "id": None,
        "hook": "shop-1_orders",
        "headers": {
            "webhook-id": "msg_abc",
            "webhook-timestamp": record["headers"]["webhook-timestamp"],
            "webhook-signature": None,
            "content-type": "application/json",
            "user-agent": "orderproj-webhooks/1",
        },
        "body": body.decode(),
        "received_at": None,
        "status": 200,
        "outcome": "ok",
        "verified": None,
    }
    assert record["headers"]["webhook-timestamp"].isdigit()


def test_scripted_outcomes_answer_the_next_deliveries_in_order(http, receiver_url):
    # given
    configure(http, receiver_url, fail_status=503, slow_ms=300)
    script(http, receiver_url, "fail", "ok")
    script(http, receiver_url, "slow", "fail")  # appended

    # when
    answers = []
    for i in range(5):
        started = time.monotonic()
        response = deliver(http, receiver_url, webhook_id=f"msg_{i}")
        answers.append((response.status_code, time.monotonic() - started))

    # then
    assert [status for status, _ in answers] == [503, 200, 200, 503, 200]
    assert answers[2][1] >= 0.3  # slow
    failed = deliver(http, receiver_url)  # nothing scripted any more: success
    assert failed.status_code == 200
    records = received(http, receiver_url)
    assert [(r["status"], r["outcome"]) for r in records] == [
        (503, "fail"),
        (200, "ok"),
        (200, "slow"),
        (503, "fail"),
        (200, "ok"),
        (200, "ok"),
    ]
    stats = http.get(f"{receiver_url}/_control/stats").json()
    assert stats["script_pending"] == 0


def test_an_outcome_pinned_for_one_hook_answers_it_alone_until_unpinned(http, receiver_url):
    # given: one receiver of two failing, whatever the script says
    script(http, receiver_url, "ok", "ok")
    pinned = http.put(f"{receiver_url}/_control/hooks/bad", json={"outcome": "fail"})
    assert pinned.status_code == 200, pinned.text

    # when
    statuses = [deliver(http, receiver_url, hook=hook).status_code for hook in ("bad", "good")]
    statuses.append(deliver(http, receiver_url, hook="bad").status_code)
    http.put(f"{receiver_url}/_control/hooks/bad", json={"outcome": None})
    statuses.append(deliver(http, receiver_url, hook="bad").status_code)

    # then: the script went to the other hook and, once unpinned, to the bad one again
    assert statuses == [500, 200, 500, 200]
    records = received(http, receiver_url)
    assert [(r["hook"], r["outcome"]) for r in records] == [
        ("bad", "fail"),
        ("good", "ok"),
        ("bad", "fail"),
        ("bad", "ok"),
    ]
    http.put(f"{receiver_url}/_control/hooks/bad", json={"outcome": "hang"})
    http.post(f"{receiver_url}/_control/reset")
    assert deliver(http, receiver_url, hook="bad").status_code == 200  # reset unpins


def test_a_failure_answers_the_json_error_shape_with_fail_status(http, receiver_url):
    script(http, receiver_url, "fail")

    response = deliver(http, receiver_url)

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "simulated_failure"


def test_always_fail_fails_every_delivery_after_the_script(http, receiver_url):
    # given
    configure(http, receiver_url, always_fail=True, fail_status=410)
    script(http, receiver_url, "ok")

    # when
    answers = statuses(http, [receiver_url] * 4)

    # then
    assert answers == [200, 410, 410, 410]
    assert [r["status"] for r in received(http, receiver_url)] == answers
    configure(http, receiver_url, always_fail=False)
    assert deliver(http, receiver_url).status_code == 200


def test_seeded_fail_rate_is_reproducible_whichever_server_answers(http, receiver_url, receiver_db):
    # given
    configure(http, receiver_url, fail_rate=0.5, seed=7)
    first = statuses(http, [receiver_url] * 16)

    # when: the same seed set again, and the deliveries shared with a second server
    configure(http, receiver_url, seed=7)
    with serve(receiver.create_app(receiver_db)) as other_url:
        again = statuses(http, [receiver_url, other_url] * 8)
    configure(http, receiver_url, seed=8)
    other_seed = statuses(http, [receiver_url] * 16)

    # then
    assert set(first) == {200, 500}
    assert again == first
    assert other_seed != first


def test_a_timeout_answers_after_the_sender_gave_up_and_is_recorded(http, receiver_url):
    # given
    configure(http, receiver_url, timeout_delay_ms=1000)
    script(http, receiver_url, "timeout", "timeout")

    # when
    with pytest.raises(requests.ReadTimeout):
        deliver(http, receiver_url, webhook_id="msg_gave_up", timeout=0.3)
    started = time.monotonic()
    late = deliver(http, receiver_url, webhook_id="msg_waited", timeout=10)
    waited = time.monotonic() - started

    # then
    assert (late.status_code, late.json()) == (200, {"received": True})
    assert waited >= 1.0
    records = received(http, receiver_url)
    assert [(r["headers"]["webhook-id"], r["status"], r["outcome"]) for r in records] == [
        ("msg_gave_up", 200, "timeout"),
        ("msg_waited", 200, "timeout"),
    ]


@pytest.mark.parametrize(
    ("configured", "signed_with", "verified"),
    [
        (SECRET, SECRET, True),
        (SECRET, OTHER_SECRET, False),
        (SECRET, None, False),
        ("", SECRET, None),
    ],
    ids=["right-key", "wrong-key", "unsigned", "no-secret-configured"],
)
def test_the_signature_is_verified_and_recorded_but_not_refused(
    http, receiver_url, configured, signed_with, verified
):
    configure(http, receiver_url, secret=configured)

    response = deliver(http, receiver_url, secret=signed_with)

    assert response.status_code == 200
    [record] = received(http, receiver_url)
    assert record["verified"] is verified
    if signed_with is not None:
        assert record["headers"]["webhook-signature"].startswith("v1,")


def test_reject_unverified_refuses_a_bad_signature_with_401(http, receiver_url):
    # given
    configure(http, receiver_url, secret=SECRET, reject_unverified=True)
    script(http, receiver_url, "fail")

    # when
    refused = deliver(http, receiver_url, secret=OTHER_SECRET, webhook_id="msg_forged")
    accepted = deliver(http, receiver_url, secret=SECRET, webhook_id="msg_real")

    # then: the refused delivery took nothing of the script
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_signature"
    assert accepted.status_code == 500
    records = received(http, receiver_url)
    assert [(r["status"], r["outcome"], r["verified"]) for r in records] == [
        (401, "rejected", False),
        (500, "fail", True),
    ]
    stats = http.get(f"{receiver_url}/_control/stats").json()
    assert stats["verified"] == {"true": 1, "false": 1}


def test_verify_follows_the_standard_webhooks_recipe():
    body = b'{"type": "order.shipped"}'
    now = 1_700_000_000
    right = sign(SECRET, "msg_1", now, body)
    wrong = sign(OTHER_SECRET, "msg_1", now, body)

    def headers(signature: str) -> dict[str, str]:
        # In any case: HTTP header names are case-insensitive.
        return {
            "Webhook-Id": "msg_1",
            "WEBHOOK-TIMESTAMP": str(now),
            "webhook-signature": signature,
        }

    assert receiver.verify(SECRET, headers(right), body, now=now)
    assert receiver.verify(SECRET, headers(right), body.decode(), now=now + 299)
    assert receiver.verify(SECRET, headers(f"{wrong} {right}"), body, now=now)  # key rotation
    assert not receiver.verify(SECRET, headers(wrong), body, now=now)
    assert not receiver.verify(SECRET, headers(right), body + b" ", now=now)
    assert not receiver.verify(SECRET, headers(right), body, now=now + 301)  # a replay
    assert not receiver.verify(SECRET, headers(right), body, now=now - 301)
    assert not receiver.verify(SECRET, headers(right.replace("v1,", "v2,")), body, now=now)
    assert not receiver.verify(SECRET, headers("v1,é"), body, now=now)
    assert not receiver.verify(SECRET, {"webhook-id": "msg_1"}, body, now=now)
    assert not receiver.verify("whsec_not base64!", headers(right), body, now=now)


def test_received_pages_oldest_first_and_filters_by_webhook_id(http, receiver_url):
    for webhook_id in ("msg_a", "msg_b", "msg_a", "msg_c", "msg_a"):
        deliver(http, receiver_url, webhook_id=webhook_id)

    first = http.get(f"{receiver_url}/_control/received", params={"limit": 2}).json()
    rest = http.get(
        f"{receiver_url}/_control/received",
        params={"limit": 10, "after_id": first["next_after_id"]},
    ).json()
    retries = received(http, receiver_url, webhook_id="msg_a")

    ids = [r["id"] for r in first["results"] + rest["results"]]
    assert len(ids) == 5 and ids == sorted(ids)
    assert first["next_after_id"] == ids[1]
    assert rest["next_after_id"] is None
    assert [r["id"] for r in retries] == [ids[0], ids[2], ids[4]]
    stats = http.get(f"{receiver_url}/_control/stats").json()
    assert stats == {
        "received": 5,
        "by_status": {"200": 5},
        "by_outcome": {"ok": 5},
        "webhook_ids": 3,
        "verified": {"true": 0, "false": 0},
        "script_pending": 0,
    }


def test_reset_forgets_deliveries_and_script_and_restores_the_config(http, receiver_url):
    # given
    configure(http, receiver_url, always_fail=True, secret=SECRET)
    script(http, receiver_url, "fail", "fail")
    deliver(http, receiver_url)
    before = received(http, receiver_url)

    # when
    reset = http.post(f"{receiver_url}/_control/reset")

    # then
    assert reset.status_code == 200
    assert reset.json()["config"] == receiver.DEFAULT_CONFIG
    assert http.get(f"{receiver_url}/_control/config").json() == receiver.DEFAULT_CONFIG
    assert received(http, receiver_url) == []
    assert deliver(http, receiver_url).status_code == 200
    [after] = received(http, receiver_url)
    assert after["id"] > before[0]["id"]  # ids never come back


def test_config_is_set_by_put_or_post_and_read_back(http, receiver_url):
    put = http.put(f"{receiver_url}/_control/config", json={"fail_rate": 0.25, "slow_ms": 10})
    post = http.post(f"{receiver_url}/_control/config", json={"reject_unverified": True})

    assert (put.status_code, post.status_code) == (200, 200)
    assert http.get(f"{receiver_url}/_control/config").json() == {
        **receiver.DEFAULT_CONFIG,
        "fail_rate": 0.25,
        "slow_ms": 10,
        "reject_unverified": True,
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("put", "/_control/config", {"colour": "blue"}),
        ("put", "/_control/config", {"fail_rate": 1.5}),
        ("put", "/_control/config", {"fail_rate": True}),
        ("put", "/_control/config", {"latency_ms": -1}),
        ("put", "/_control/config", {"seed": "1"}),
        ("put", "/_control/config", {"fail_status": 200}),
        ("put", "/_control/config", {"always_fail": "yes"}),
        ("put", "/_control/config", {"secret": "plain words"}),
        ("put", "/_control/config", {"secret": "whsec_"}),
        ("put", "/_control/config", {"secret": 12}),
        ("post", "/_control/config", [1, 2]),
        ("post", "/_control/script", {"outcomes": ["ok", "explode"]}),
        ("post", "/_control/script", {"outcomes": "ok"}),
        ("post", "/_control/script", {"outcomes": ["ok"], "key": "x"}),
        ("post", "/_control/script", {"outcomes": ["drip", "stall"]}),
        ("put", "/_control/config", {"drip_interval_ms": -1}),
        ("put", "/_control/config", {"hang_ms": 0.5}),
        ("get", "/_control/received?after_id=abc", None),
        ("get", "/_control/received?after_id=-1", None),
        ("get", "/_control/received?limit=0", None),
        ("get", "/_control/received?limit=100000", None),
        ("put", "/_control/hooks/bad", {"outcome": "explode"}),
        ("put", "/_control/hooks/bad", {"outcome": "hang", "for": 3}),
        ("put", "/_control/hooks/a.b", {"outcome": "hang"}),
        ("post", "/hooks/a.b", None),
        ("post", f"/hooks/{'x' * 65}", None),
    ],
)
def test_bad_input_is_a_400_in_the_json_error_shape(http, receiver_url, method, path, body):
    response = http.request(method, f"{receiver_url}{path}", json=body)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert response.json()["error"]["message"]
    assert http.get(f"{receiver_url}/_control/config").json() == receiver.DEFAULT_CONFIG
    assert received(http, receiver_url) == []


def test_malformed_json_to_the_control_api_is_a_400(http, receiver_url):
    response = http.put(
        f"{receiver_url}/_control/config",
        data=b"{not json",
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_unknown_paths_and_methods_answer_json_errors(http, receiver_url):
    missing = http.get(f"{receiver_url}/nowhere")
    wrong_method = http.get(f"{receiver_url}/hooks/orders")
    too_large = deliver(http, receiver_url, b"x" * (receiver.MAX_BODY_BYTES + 1))

    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert too_large.status_code == 413
    assert "error" in too_large.json()


def test_the_combined_application_mounts_it_with_defaults_from_the_environment(
    http, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RECEIVER_SIM_FAIL_RATE", "1")
    monkeypatch.setenv("RECEIVER_SIM_LATENCY_MS", "5")
    monkeypatch.setenv("RECEIVER_SIM_SEED", "42")
    monkeypatch.setenv("RECEIVER_SIM_SECRET", SECRET)

    with serve(wsgi.build_application(str(tmp_path))) as url:
        response = deliver(http, f"{url}/sim/receiver", secret=SECRET)
        config = http.get(f"{url}/sim/receiver/_control/config").json()
        [record] = received(http, f"{url}/sim/receiver")

    assert response.status_code == 500
    assert (config["fail_rate"], config["latency_ms"], config["seed"]) == (1.0, 5, 42)
    assert config["secret"] == SECRET
    assert record["verified"] is True
    assert (tmp_path / "receiver-sim.sqlite3").exists()


def test_an_unusable_secret_in_the_environment_stops_the_start_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RECEIVER_SIM_SECRET", "hunter2")

    with pytest.raises(ValueError, match="RECEIVER_SIM_SECRET") as raised:
        wsgi.build_application(str(tmp_path))

    assert "hunter2" not in str(raised.value)


def test_the_test_side_handle_drives_the_shared_simulator_server(http, receiver_sim):
    # given
    receiver_sim.configure(secret=SECRET)
    receiver_sim.script("fail")
    url = receiver_sim.hook_url().removesuffix("/hooks/orders")

    # when
    first = deliver(http, url, secret=SECRET, webhook_id="msg_x")
    second = deliver(http, url, secret=SECRET, webhook_id="msg_x")
    deliver(http, url, hook="refunds", webhook_id="msg_y")

    # then
    assert receiver_sim.hook_url("refunds").endswith("/sim/receiver/hooks/refunds")
    assert (first.status_code, second.status_code) == (500, 200)
    records = receiver_sim.received()
    assert [(r["hook"], r["status"], r["verified"]) for r in records] == [
        ("orders", 500, True),
        ("orders", 200, True),
        ("refunds", 200, False),
    ]
    assert [r["id"] for r in receiver_sim.received(after_id=records[0]["id"])] == [
        records[1]["id"],
        records[2]["id"],
    ]
    assert len(receiver_sim.received(webhook_id="msg_x")) == 2
    stats = receiver_sim.stats()
    assert (stats["received"], stats["by_status"], stats["webhook_ids"]) == (
        3,
        {"200": 2, "500": 1},
        2,
    )
    assert stats["verified"] == {"true": 2, "false": 1}


def test_a_dripped_answer_is_200_at_once_and_its_body_a_byte_at_a_time(http, receiver_url):
    # given
    configure(http, receiver_url, drip_interval_ms=70)
    script(http, receiver_url, "drip")

    # when
    read = read_byte_by_byte(deliver, http, receiver_url, webhook_id="msg_dripped")

    # then the sender never waited past its read timeout, yet the answer took far longer
    assert (read.response.status_code, read.body) == (200, b'{"received":true}')
    assert read.longest_gap_s < READ_TIMEOUT_S
    assert read.total_s > 2 * READ_TIMEOUT_S
    assert read.headers_after_s < read.total_s / 4
    [record] = received(http, receiver_url)
    assert (record["status"], record["outcome"]) == (200, "drip")


def test_a_hang_answers_nothing_in_time_and_is_recorded(http, receiver_url):
    # given
    configure(http, receiver_url, hang_ms=800)
    script(http, receiver_url, "hang")

    # when
    with pytest.raises(requests.ReadTimeout):
        deliver(http, receiver_url, webhook_id="msg_hung", timeout=(5, READ_TIMEOUT_S))

    # then
    [record] = received(http, receiver_url)
    assert (record["headers"]["webhook-id"], record["status"], record["outcome"]) == (
        "msg_hung",
        503,
        "hang",
    )

    # and a sender that waits out hang_ms gets a 503
    configure(http, receiver_url, hang_ms=200)
    script(http, receiver_url, "hang")
    started = time.monotonic()
    late = deliver(http, receiver_url, webhook_id="msg_waited", timeout=5)
    assert time.monotonic() - started >= 0.2
    assert (late.status_code, late.json()["error"]["code"]) == (503, "service_unavailable")


def test_a_file_from_before_drip_and_hang_keeps_its_deliveries_and_ids(http, receiver_db):
    # given a file whose deliveries table was made before there were drip and hang
    receiver.create_app(receiver_db)
    conn = sqlite3.connect(receiver_db, isolation_level=None)
    conn.executescript(
        """
        DROP TABLE received;
        CREATE TABLE received (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            hook TEXT NOT NULL,
            webhook_id TEXT,
            headers TEXT NOT NULL,
            body TEXT NOT NULL,
            received_at TEXT NOT NULL,
            status INTEGER NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'fail', 'timeout', 'slow', 'rejected')),
            verified INTEGER CHECK (verified IN (0, 1))
        );
        INSERT INTO received (id, hook, webhook_id, headers, body, received_at, status, outcome)
        VALUES (7, 'orders', 'msg_old', '{}', '{}', '2026-01-01T00:00:00.000Z', 200, 'ok');
        INSERT INTO received (id, hook, webhook_id, headers, body, received_at, status, outcome)
        VALUES (9, 'orders', 'msg_gone', '{}', '{}', '2026-01-01T00:00:00.000Z', 200, 'ok');
        DELETE FROM received WHERE id = 9;
        """
    )
    conn.close()

    # when
    with serve(receiver.create_app(receiver_db)) as url:
        configure(http, url, drip_interval_ms=0)
        script(http, url, "drip")
        deliver(http, url, webhook_id="msg_new")
        records = received(http, url)

    # then
    assert [(r["id"], r["outcome"]) for r in records] == [(7, "ok"), (10, "drip")]
    indexes = sqlite3.connect(receiver_db).execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'received'"
    )
    assert [name for (name,) in indexes] == ["received_by_webhook_id"]
