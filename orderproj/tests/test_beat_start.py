"""celery-beat started while PostgreSQL is down (a restart, a failover, a stack starting in
the wrong order) waits for it instead of exiting, then schedules as usual: a real beat
process, the database behind a port that refuses connections until it is opened."""

import signal
import time

import pytest
from django.db import connection

from orderproj.ops_state import beat_heartbeat_age
from tests.live import BeatProcess
from tests.live import test_database_url as database_url
from tests.processes import TcpForwarder, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_beat_started_while_the_database_is_down_waits_for_it(worker_env, tmp_path):
    # given: the database reachable only through a port nothing listens on yet
    settings = connection.settings_dict
    database = TcpForwarder((settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432)))
    env = {
        **worker_env,
        "DATABASE_URL": database_url({**settings, "PORT": database.port}),
    }
    log = tmp_path / "beat.log"

    # when: beat starts
    beat = BeatProcess(env, log_path=log)
    try:
        # (twice: a second read of the schedule is not the first one upstream)
        wait_for(
            lambda: log.read_text().count("the database is unavailable") >= 2,
            timeout=30,
            message="beat to report the database unavailable twice",
        )
        assert beat.proc.poll() is None, log.read_text()  # waiting, not gone

        # and then the database comes up
        opened = time.time()
        database.open()

        # then: beat reads its schedule and ticks (its heartbeat is newer than the opening)
        wait_for(
            lambda: (age := beat_heartbeat_age()) is not None and age < time.time() - opened,
            timeout=60,
            message="beat to tick once the database is up",
        )
        assert beat.proc.poll() is None, log.read_text()
    finally:
        beat.stop()
        database.close()


def test_beat_waiting_for_the_database_stops_at_once_when_asked(worker_env, tmp_path):
    # given: beat waiting for a database that does not answer
    settings = connection.settings_dict
    database = TcpForwarder((settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432)))
    env = {**worker_env, "DATABASE_URL": database_url({**settings, "PORT": database.port})}
    log = tmp_path / "beat.log"
    beat = BeatProcess(env, log_path=log)
    try:
        wait_for(
            lambda: "the database is unavailable" in log.read_text(),
            timeout=30,
            message="beat to report the database unavailable",
        )

        # when: it is stopped as a supervisor does
        beat.proc.send_signal(signal.SIGTERM)

        # then: it ends at once, cleanly, without waiting for the database first
        assert beat.proc.wait(timeout=10) == 0, log.read_text()
    finally:
        beat.stop()
