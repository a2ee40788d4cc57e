"""celery-beat's scheduler: django-celery-beat's DatabaseScheduler (the schedule lives in the
database and is edited in the admin), recording a heartbeat after every tick so /api/health/
can tell a beat that is alive from one that died or hangs (orderproj.ops_state), and waiting
for the database at start rather than exiting (upstream reads the schedule once at start,
unguarded: a database restarting then ends beat, and nothing wakes the workers after)."""

import logging
import time

from django.db import DatabaseError, close_old_connections
from django_celery_beat.schedulers import DatabaseScheduler

from orderproj.ops_state import beat_heartbeat_record

logger = logging.getLogger(__name__)


class HeartbeatDatabaseScheduler(DatabaseScheduler):
    # Ticks come in bursts when many entries are due; one write a second is plenty.
    heartbeat_every = 1.0
    _last_heartbeat = 0.0
    # Waiting for the database at start: first retry after this long, doubling up to the cap.
    start_retry_first, start_retry_cap = 1.0, 30.0
    # Set while a scheduler waits: celery's stop handler builds the scheduler again to save
    # it, and must not wait in turn (nothing has been read, so nothing needs saving).
    _waiting_for_database = False

    def setup_schedule(self) -> None:
        cls = HeartbeatDatabaseScheduler
        if cls._waiting_for_database:
            raise SystemExit(0)
        cls._waiting_for_database = True
        try:
            self._wait_for_database()
        finally:
            cls._waiting_for_database = False

    def _wait_for_database(self) -> None:
        delay = self.start_retry_first
        while True:
            try:
                return super().setup_schedule()
            except DatabaseError as exc:
                logger.warning(
                    "beat: the database is unavailable (%s: %s); reading the schedule again "
                    "in %.0f s",
                    type(exc).__name__,
                    exc,
                    delay,
                )
            close_old_connections()
            # Read the whole schedule again next time: upstream marks its first read done
            # before the read, and would otherwise serve the empty schedule it never got.
            self._initial_read, self._schedule = True, None
            time.sleep(delay)
            delay = min(delay * 2, self.start_retry_cap)

    def tick(self, *args, **kwargs) -> float:
        interval = super().tick(*args, **kwargs)
        now = time.monotonic()
        if now - self._last_heartbeat >= self.heartbeat_every:
            try:
                beat_heartbeat_record()
            except Exception as exc:  # a heartbeat must never stop the scheduler
                logger.warning("beat heartbeat not recorded (%s: %s)", type(exc).__name__, exc)
            else:
                self._last_heartbeat = now
        return interval
