"""Actors that take turns: each is a thread of its own (its own database connection), and
only one runs at a time. An actor runs until it reaches a checkpoint (core/checkpoints.py)
outside a transaction, where the seeded scheduler may stop it and let another run, or until
its step is done. So an interleaving is decided by the seed, not by the machine's timing:
which actor runs between which checkpoints replays exactly.

An actor stopped at a checkpoint holds no transaction and so no row lock: the others never
wait for it in the database. Threads an actor starts (a batch's payment requests, a claim's
renewal) are not actors: they run freely, and never stop at a checkpoint.
"""

import threading
from collections.abc import Callable
from typing import Any

from django.db import connections

from core.checkpoints import listening
from core.http import in_transaction


class Killed(BaseException):
    """Raised in an actor the scheduler killed, to unwind it once the seed is over."""


class Actor:
    """A thread that runs `step()` each time the scheduler starts it, and reports back when
    the step is done or it stopped at a checkpoint."""

    def __init__(self, name: str, step: Callable[["Actor"], Any]):
        self.name, self.step = name, step
        self.turn = threading.Event()  # the scheduler's go
        self.back = threading.Event()  # the actor's "stopped" (at a checkpoint, or done)
        self.in_step = False
        self.killed = False
        self.stopping = False
        self.error: BaseException | None = None
        self.at: tuple[str, dict] | None = None  # the checkpoint it stands at
        self.state: dict[str, Any] = {}  # what its step wants to keep between turns
        self.thread = threading.Thread(target=self._run, name=f"actor-{name}", daemon=True)

    def _run(self) -> None:
        try:
            while True:
                self.turn.wait()
                self.turn.clear()
                if self.stopping:
                    return
                self.in_step = True
                try:
                    self.step(self)
                except Killed:
                    return
                except BaseException as exc:  # reported by the run, never swallowed
                    self.error = exc
                    return
                finally:
                    self.in_step = False
                    self.at = None
                    self.back.set()
        finally:
            connections.close_all()


class Scheduler:
    """Runs actors one at a time, switching at checkpoints as `decide(actor, name, context)`
    says: "go on", "switch" (stop here; the scheduler runs another), or a callable to run in
    the actor's thread right there (a fault: raise to kill it, say)."""

    def __init__(self, decide: Callable[["Actor", str, dict], Any]):
        self.decide = decide
        self.actors: list[Actor] = []
        self.current: Actor | None = None
        self._by_thread: dict[int, Actor] = {}
        self._hooks: list = []

    def add(self, actor: Actor) -> Actor:
        self.actors.append(actor)
        actor.thread.start()
        self._by_thread[actor.thread.ident] = actor
        return actor

    def actor_here(self) -> Actor | None:
        return self._by_thread.get(threading.get_ident())

    def listen(self, names: list[str]) -> None:
        for name in names:
            hook = listening(name, lambda context, name=name: self._at_checkpoint(name, context))
            hook.__enter__()
            self._hooks.append(hook)

    def close(self) -> None:
        for hook in reversed(self._hooks):
            hook.__exit__(None, None, None)
        self._hooks.clear()
        for actor in self.actors:
            actor.stopping = True
            if actor.in_step:  # killed, or stopped mid-step: unwound
                actor.killed = True
            actor.turn.set()
        for actor in self.actors:
            actor.thread.join(timeout=30)

    def _at_checkpoint(self, name: str, context: dict) -> None:
        actor = self.actor_here()
        if actor is None or in_transaction():
            return  # not an actor's own thread, or inside a transaction: never stopped
        verdict = self.decide(actor, name, context)
        if callable(verdict):
            verdict()
            return
        if verdict != "switch":
            return
        actor.at = (name, context)
        actor.back.set()
        actor.turn.wait()
        actor.turn.clear()
        actor.at = None
        if actor.killed or actor.stopping:
            raise Killed()

    def run(self, actor: Actor, *, timeout: float = 120) -> None:
        """Give `actor` the turn (a new step, or going on from its checkpoint) until it stops
        again."""
        if actor.killed:
            raise RuntimeError(f"{actor.name} was killed")
        self.current = actor
        actor.back.clear()
        actor.turn.set()
        if not actor.back.wait(timeout):
            raise AssertionError(f"actor {actor.name} did not stop within {timeout}s")
        self.current = None
        if actor.error is not None:
            raise actor.error

    def kill(self, actor: Actor) -> None:
        """The actor dies where it stands (it is never given the turn again): what it holds
        (a claim) it holds until that runs out."""
        actor.killed = True
