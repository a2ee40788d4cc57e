"""/api/health/ with everything running: a real worker and a real celery-beat."""

import pytest

from orderproj.ops_state import beat_heartbeat_age, beat_heartbeat_clear
from tests.live import BeatProcess
from tests.processes import wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_worker")]


@pytest.fixture(scope="module")
def celery_beat(worker_env, tmp_path_factory):
    beat_heartbeat_clear()
    beat = BeatProcess(worker_env, log_path=tmp_path_factory.mktemp("beat") / "beat.log")
    yield beat
    beat.stop()


def test_health_is_200_when_database_broker_worker_and_beat_answer(api_client, celery_beat):
    # given: beat has ticked (its scheduler records a heartbeat every tick)
    wait_for(
        lambda: beat_heartbeat_age() is not None, timeout=30, message="celery-beat's first tick"
    )

    # when
    response = api_client.get("/api/health/")

    # then
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "broker": True,
        "worker": True,
        "beat": True,
    }
    assert body["checks"]["worker"]["details"]["answered"][0].startswith("test-")
    assert body["checks"]["beat"]["details"]["last_tick_seconds_ago"] < 10


def test_health_names_beat_once_it_stops_ticking(api_client, celery_beat, settings):
    # given: beat stopped, its last tick older than the limit
    celery_beat.stop()
    settings.BEAT_HEARTBEAT_MAX_AGE_SECONDS = 1
    wait_for(lambda: beat_heartbeat_age() > 1, timeout=10, message="the heartbeat to age")

    # when
    response = api_client.get("/api/health/")

    # then: only beat is named; the worker still answers
    assert response.status_code == 503
    assert response.json()["error"]["details"]["unreachable"] == ["beat"]
