"""Deterministic interleavings: stop an actor at a named checkpoint (core/checkpoints.py),
let another actor run, then let the first go on. Each interleaving a test names happens
exactly so, every run, with no sleeps and no luck.

    with Pause("payment.charge.sending", payment_id=payment.pk) as charging:
        worker = Background(lambda: advance(order.pk, *others))
        charging.wait_reached()
        ...  # another actor runs while the worker is about to send its charge
    worker.result()  # leaving the block let the worker go on
"""

import threading
from collections.abc import Callable
from typing import Any

from core.checkpoints import listening


class _Listener:
    """Runs `_act(context)` for the first `times` arrivals at checkpoint `name` whose context
    matches `match` (each key equal), while registered (a `with` block)."""

    def __init__(self, name: str, *, times: int, **match: Any):
        self.name = name
        self.match = match
        self.remaining = times
        self.arrivals = 0
        self._lock = threading.Lock()
        self._listening = listening(name, self._hook)

    def _hook(self, context: dict[str, Any]) -> None:
        if any(context.get(key) != value for key, value in self.match.items()):
            return
        with self._lock:
            self.arrivals += 1
            if self.remaining <= 0:
                return
            self.remaining -= 1
        self._act(context)

    def _act(self, context: dict[str, Any]) -> None:
        raise NotImplementedError

    def __enter__(self):
        self._listening.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._listening.__exit__(*exc)


class Pause(_Listener):
    """Stops the first `times` threads that reach checkpoint `name` with a matching context,
    until `release()` or the end of the `with` block."""

    def __init__(self, name: str, *, times: int = 1, **match: Any):
        super().__init__(name, times=times, **match)
        self.contexts: list[dict[str, Any]] = []
        self._reached = threading.Event()
        self._released = threading.Event()

    def _act(self, context: dict[str, Any]) -> None:
        self.contexts.append(context)
        self._reached.set()
        if not self._released.wait(timeout=60):
            raise AssertionError(f"paused at {self.name} for 60 s: the test never released it")

    def wait_reached(self, timeout: float = 15) -> dict[str, Any]:
        """Block until an actor stands at the checkpoint; returns its context."""
        assert self._reached.wait(timeout), f"no actor reached {self.name} within {timeout}s"
        return self.contexts[-1]

    @property
    def reached(self) -> bool:
        return self._reached.is_set()

    def release(self) -> None:
        self._released.set()

    def __exit__(self, *exc) -> None:
        self.release()
        super().__exit__(*exc)


class Inject(_Listener):
    """Runs `action(context)` (typically: raise a fault) at checkpoint `name` for the first
    `times` matching arrivals; counts every matching arrival in `arrivals`."""

    def __init__(
        self,
        name: str,
        action: Callable[[dict[str, Any]], None],
        *,
        times: int = 1,
        **match: Any,
    ):
        super().__init__(name, times=times, **match)
        self.action = action

    def _act(self, context: dict[str, Any]) -> None:
        self.action(context)


def raise_(exc: BaseException) -> Callable[[dict[str, Any]], None]:
    def action(context: dict[str, Any]) -> None:
        raise exc

    return action
