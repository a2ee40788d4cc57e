"""/api/health/ while something is down. With everything up: test_health_live.py."""

import time

import pytest

from orderproj.ops_state import beat_heartbeat_clear, beat_heartbeat_record


@pytest.fixture
def no_beat_heartbeat():
    beat_heartbeat_clear()
    yield
    beat_heartbeat_clear()


@pytest.mark.django_db
def test_health_is_503_naming_the_worker_and_beat_when_none_runs(
    api_client, no_beat_heartbeat, settings
):
    # given: no worker consumes this test run's broker, and beat never ticked
    settings.HEALTH_WORKER_PING_TIMEOUT = 0.5
    started = time.monotonic()

    # when
    response = api_client.get("/api/health/")

    # then: it answered within about the ping's timeout, naming both
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is True
    assert body["checks"]["worker"] == {
        "ok": False,
        "error": "No worker answered a ping within 0.5s.",
        "details": {},
    }
    assert body["checks"]["beat"]["error"] == "celery-beat has never recorded a tick."
    assert body["error"]["details"]["unreachable"] == ["beat", "worker"]
    assert body["error"]["message"] == "Unreachable: beat, worker."


@pytest.mark.django_db
def test_health_names_beat_when_its_last_tick_is_too_old(api_client, no_beat_heartbeat, settings):
    settings.HEALTH_WORKER_PING_TIMEOUT = 0.1
    settings.BEAT_HEARTBEAT_MAX_AGE_SECONDS = 60
    beat_heartbeat_record(now=time.time() - 90)  # what a beat that stopped 90 s ago left

    body = api_client.get("/api/health/").json()

    assert body["checks"]["beat"]["ok"] is False
    assert body["checks"]["beat"]["error"].startswith("celery-beat's last tick was 9")
    assert 90 <= body["checks"]["beat"]["details"]["last_tick_seconds_ago"] < 95
    assert "beat" in body["error"]["details"]["unreachable"]


@pytest.fixture
def unreachable_broker(settings):
    # A real Redis client against a port nothing listens on: the check must fail fast.
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"


@pytest.mark.django_db
def test_health_is_503_naming_the_broker_when_it_is_unreachable(api_client, unreachable_broker):
    response = api_client.get("/api/health/")

    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["broker"]["error"]
    # the worker and beat are reached through the broker: not judged, not named
    assert body["checks"]["worker"]["error"] == "Not checked: the broker is unreachable."
    assert body["error"]["code"] == "service_unavailable"
    assert body["error"]["details"]["unreachable"] == ["broker"]
    assert "broker" in body["error"]["message"]


@pytest.mark.django_db
def test_unknown_api_path_is_json_404(client):
    response = client.get("/api/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
