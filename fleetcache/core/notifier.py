"""One pub/sub subscription per cache, multiplexed to every waiting thread.

The namespace's event channel carries three kinds of message, ``kind|payload``:

``r|<entry key>[|<entry>]``  the entry was written: wake its followers (small entries
                   ride along, so followers skip a round trip)
``e|<entry key>``  the entry's leader failed: wake its followers (they read the record)
``g|<generation>`` the namespace moved to a new generation (``invalidate``)

A background thread owns the subscription.  A follower registers a :class:`Waiter` for its
entry key *before* it looks at Redis again, and the subscription is established before the
first follower registers, so a notification published after that look cannot be lost.
When the subscription drops, every waiter is woken (they re-check and fall back to
polling), the thread reconnects with jittered back-off, re-reads the generation and marks
itself healthy again.  A PING every few seconds detects a black-holed connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable

import redis

from fleetcache.backend import REDIS_ERRORS

log = logging.getLogger("fleetcache.notifier")

PING_EVERY = 2.0
READ_TIMEOUT = 0.25


class WaiterBase:
    """A registration for one entry key's notifications (use as a context manager)."""

    __slots__ = ("_key", "_registry", "entry")

    def __init__(self, registry: Registry, key: str) -> None:
        self._registry = registry
        self._key = key
        #: The entry bytes a ready notification carried, if any (see :meth:`take`).
        self.entry: bytes | None = None

    def take(self) -> bytes | None:
        """The entry bytes delivered with the last notification, once."""
        entry, self.entry = self.entry, None
        return entry

    def wake(self) -> None:  # pragma: no cover - overridden
        """Wake the waiter."""
        raise NotImplementedError

    def close(self) -> None:
        """Unregister."""
        self._registry.unregister(self._key, self)

    def __enter__(self) -> WaiterBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Registry:
    """The waiters of one subscription, by entry key, and the message dispatch rules.

    Shared by the thread and the asyncio notifier; its lock is only ever held for a few
    dictionary operations (never across I/O), so it is safe on an event loop too.
    """

    def __init__(self, on_generation: Callable[[int], None]) -> None:
        self._on_generation = on_generation
        self._guard = threading.Lock()
        self._waiters: dict[str, set[WaiterBase]] = {}

    def add(self, key: str, waiter: WaiterBase) -> None:
        """Register ``waiter`` for ``key``."""
        with self._guard:
            self._waiters.setdefault(key, set()).add(waiter)

    def unregister(self, key: str, waiter: WaiterBase) -> None:
        """Remove ``waiter``'s registration for ``key``."""
        with self._guard:
            ws = self._waiters.get(key)
            if ws is not None:
                ws.discard(waiter)
                if not ws:
                    del self._waiters[key]

    def waiting(self) -> int:
        """How many waiters are registered (for tests and stats)."""
        with self._guard:
            return sum(len(ws) for ws in self._waiters.values())

    def wake(self, key: str | None, entry: bytes | None = None) -> None:
        """Wake the waiters of ``key`` (handing them ``entry``), or all when ``key`` is None."""
        with self._guard:
            if key is None:
                targets = [w for ws in self._waiters.values() for w in ws]
            else:
                targets = list(self._waiters.get(key, ()))
        for w in targets:
            if entry is not None:
                w.entry = entry
            w.wake()

    def dispatch(self, data: bytes) -> None:
        """Act on one message of the channel."""
        kind, _, payload = data.partition(b"|")
        if kind == b"r":
            key, _, entry = payload.partition(b"|")
            self.wake(key.decode(), entry or None)
        elif kind == b"e":
            self.wake(payload.decode())
        elif kind == b"g":
            try:
                self._on_generation(int(payload))
            except ValueError:
                log.warning("ignoring malformed generation message %r", data)


class Waiter(WaiterBase):
    """A thread's registration for one entry key's notifications."""

    __slots__ = ("_event",)

    def __init__(self, registry: Registry, key: str) -> None:
        super().__init__(registry, key)
        self._event = threading.Event()

    def wait(self, timeout: float) -> bool:
        """Block until notified (True) or ``timeout`` passes (False); re-arms itself."""
        woke = self._event.wait(timeout)
        if woke:
            self._event.clear()
        return woke

    def wake(self) -> None:
        """Wake the waiting thread."""
        self._event.set()

    def __enter__(self) -> Waiter:
        return self


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Jittered exponential reconnect delay: uniform in [d/2, d], d = base·2^(n-1) ≤ cap."""
    delay = min(cap, base * 2 ** (failures - 1))
    return random.uniform(delay / 2, delay)


def ping_overdue(now: float, last_pong: float) -> bool:
    """True when the last PONG is too old: the connection is black-holed."""
    return now - last_pong > 2 * PING_EVERY + READ_TIMEOUT


#: Every live thread notifier, so that a forked child resets them all (its parent's
#: threads do not exist in the child).  Cheaper than checking os.getpid() on every hit.
_LIVE: weakref.WeakSet[Notifier] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for notifier in list(_LIVE):
        notifier._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Notifier:
    """Owns the subscription to ``channel`` and dispatches its messages.

    ``on_connect`` runs (in the notifier thread) after every (re)subscription, before the
    notifier reports itself healthy; ``on_generation`` receives each generation announced.
    """

    def __init__(
        self,
        client: redis.Redis,
        channel: str,
        on_connect: Callable[[], None],
        on_generation: Callable[[int], None],
        *,
        backoff: float = 0.05,
        backoff_max: float = 2.0,
    ) -> None:
        self._client = client
        self._channel = channel
        self._on_connect = on_connect
        self._on_generation = on_generation
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._guard = threading.Lock()
        self.registry = Registry(on_generation)
        self._healthy = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reconnects = 0
        _LIVE.add(self)

    @property
    def healthy(self) -> bool:
        """True while subscribed: notifications are being delivered."""
        return self._healthy.is_set()

    def start(self, timeout: float) -> bool:
        """Start the thread if needed; wait up to ``timeout`` for the subscription."""
        if self._thread is None:
            with self._guard:
                if self._thread is None:
                    self._stop.clear()
                    self._thread = threading.Thread(
                        target=self._run, name=f"fleetcache-notifier:{self._channel}", daemon=True
                    )
                    self._thread.start()
        return self._healthy.wait(timeout)

    def _reset_after_fork(self) -> None:
        self._guard = threading.Lock()
        self.registry = Registry(self._on_generation)
        self._healthy = threading.Event()
        self._stop = threading.Event()
        self._thread = None

    def stop(self) -> None:
        """Stop the thread and drop the subscription."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        self._thread = None
        self._healthy.clear()

    def waiter(self, key: str) -> Waiter:
        """Register for ``key``'s notifications (register before looking at Redis)."""
        w = Waiter(self.registry, key)
        self.registry.add(key, w)
        return w

    def waiting(self) -> int:
        """How many waiters are registered."""
        return self.registry.waiting()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            pubsub = self._client.pubsub()
            try:
                self._session(pubsub)
                failures = 0
            except REDIS_ERRORS as exc:
                failures += 1
                log.debug("notifier connection failed (%s); reconnecting", exc)
            finally:
                was_healthy = self._healthy.is_set()
                self._healthy.clear()
                if was_healthy:
                    self.reconnects += 1
                self.registry.wake(None)
                with contextlib.suppress(*REDIS_ERRORS):
                    pubsub.close()
            if failures and not self._stop.is_set():
                self._stop.wait(backoff_delay(failures, self._backoff, self._backoff_max))

    def _session(self, pubsub: redis.client.PubSub) -> None:
        pubsub.subscribe(self._channel)
        subscribed = False
        last_pong = time.monotonic()
        next_ping = last_pong + PING_EVERY
        while not self._stop.is_set():
            msg = pubsub.get_message(timeout=READ_TIMEOUT)
            now = time.monotonic()
            if msg is not None:
                mtype = msg["type"]
                if mtype == "message":
                    self.registry.dispatch(msg["data"])
                elif mtype == "subscribe" and not subscribed:
                    subscribed = True
                    self._on_connect()
                    self._healthy.set()
                    self.registry.wake(None)
                elif mtype == "pong":
                    last_pong = now
            if now >= next_ping:
                if ping_overdue(now, last_pong):
                    raise redis.exceptions.TimeoutError("notifier: no PONG from Redis")
                pubsub.ping()
                next_ping = now + PING_EVERY
