"""Named points in the code where a test can stop one actor and let another one run.

`checkpoint("payment.charge.sending", payment_id=...)` marks a moment whose interleaving
with other actors matters (just before a charge goes out, right after a shipment was
answered, ...). In production nothing listens and a checkpoint costs one dictionary lookup.
A test listens with `listening(name, hook)`: the hook runs in the thread that reached the
point, with the point's context, and may block it (to let another actor run first) or raise
(to inject a fault exactly there). tests/interleave.py builds pauses on this.
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Hook = Callable[[dict[str, Any]], None]

_hooks: dict[str, list[Hook]] = {}
_lock = threading.Lock()


def checkpoint(name: str, **context: Any) -> None:
    """Run the hooks listening at `name`, if any, with `context`."""
    hooks = _hooks.get(name)
    if hooks:
        for hook in list(hooks):
            hook(context)


@contextmanager
def listening(name: str, hook: Hook) -> Iterator[None]:
    """Run `hook` whenever any thread of this process reaches checkpoint `name`."""
    with _lock:
        _hooks.setdefault(name, []).append(hook)
    try:
        yield
    finally:
        with _lock:
            _hooks[name].remove(hook)
            if not _hooks[name]:
                del _hooks[name]
