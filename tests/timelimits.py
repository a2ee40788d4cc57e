"""A task's soft time limit, as Celery's prefork pool delivers it: SoftTimeLimitExceeded
raised in the running thread when the time is up, wherever it is (between two bytecodes:
a blocking call finishes first, as an interrupted system call would)."""

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from celery.exceptions import SoftTimeLimitExceeded


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None
    )


@contextmanager
def soft_time_limit(seconds: float) -> Iterator[threading.Event]:
    """Raise SoftTimeLimitExceeded in this thread once `seconds` have passed inside the
    block; yields an event set when the limit fired."""
    target = threading.get_ident()
    fired = threading.Event()
    lock = threading.Lock()
    done = False

    def fire() -> None:
        with lock:
            if not done:
                fired.set()
                _raise_in(target, SoftTimeLimitExceeded)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        with lock:
            done = True
        timer.cancel()
        if fired.is_set():
            _raise_in(target, None)  # a limit that fired but was not delivered yet: dropped
