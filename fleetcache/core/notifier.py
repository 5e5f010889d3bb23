"""One pub/sub subscription per cache, multiplexed to every waiting thread.

The namespace's event channel carries three kinds of message, ``kind|payload``:

``r|<entry key>``  the entry was written: wake its followers
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
from collections.abc import Callable
from typing import Any

import redis

from fleetcache.backend import REDIS_ERRORS

log = logging.getLogger("fleetcache.notifier")

_PING_EVERY = 2.0
_READ_TIMEOUT = 0.25


class Waiter:
    """A thread's registration for one entry key's notifications."""

    __slots__ = ("_event", "_key", "_notifier")

    def __init__(self, notifier: Notifier, key: str) -> None:
        self._notifier = notifier
        self._key = key
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

    def close(self) -> None:
        """Unregister."""
        self._notifier._unregister(self._key, self)

    def __enter__(self) -> Waiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Notifier:
    """Owns the subscription to ``channel`` and dispatches its messages.

    ``on_connect`` runs (in the notifier thread) after every (re)subscription, before the
    notifier reports itself healthy; ``on_generation`` receives each generation announced.
    """

    def __init__(
        self,
        client: redis.Redis[Any],
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
        self._waiters: dict[str, set[Waiter]] = {}
        self._healthy = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.reconnects = 0

    @property
    def healthy(self) -> bool:
        """True while subscribed: notifications are being delivered."""
        return self._healthy.is_set() and self._pid == os.getpid()

    def start(self, timeout: float) -> bool:
        """Start the thread if needed; wait up to ``timeout`` for the subscription."""
        if self._pid != os.getpid():  # forked: the parent's thread is not ours
            self._reset_after_fork()
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
        self._waiters = {}
        self._healthy = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._pid = os.getpid()

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
        w = Waiter(self, key)
        with self._guard:
            self._waiters.setdefault(key, set()).add(w)
        return w

    def _unregister(self, key: str, w: Waiter) -> None:
        with self._guard:
            ws = self._waiters.get(key)
            if ws is not None:
                ws.discard(w)
                if not ws:
                    del self._waiters[key]

    def waiting(self) -> int:
        """How many waiters are registered (for tests and stats)."""
        with self._guard:
            return sum(len(ws) for ws in self._waiters.values())

    def _wake(self, key: str | None) -> None:
        with self._guard:
            if key is None:
                targets = [w for ws in self._waiters.values() for w in ws]
            else:
                targets = list(self._waiters.get(key, ()))
        for w in targets:
            w.wake()

    def _dispatch(self, data: bytes) -> None:
        kind, _, payload = data.partition(b"|")
        if kind in (b"r", b"e"):
            self._wake(payload.decode())
        elif kind == b"g":
            try:
                self._on_generation(int(payload))
            except ValueError:
                log.warning("ignoring malformed generation message %r", data)

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
                self._wake(None)
                with contextlib.suppress(*REDIS_ERRORS):
                    pubsub.close()
            if failures and not self._stop.is_set():
                delay = min(self._backoff_max, self._backoff * 2 ** (failures - 1))
                self._stop.wait(random.uniform(delay / 2, delay))

    def _session(self, pubsub: redis.client.PubSub) -> None:
        pubsub.subscribe(self._channel)
        subscribed = False
        last_pong = time.monotonic()
        next_ping = last_pong + _PING_EVERY
        while not self._stop.is_set():
            msg = pubsub.get_message(timeout=_READ_TIMEOUT)
            now = time.monotonic()
            if msg is not None:
                mtype = msg["type"]
                if mtype == "message":
                    self._dispatch(msg["data"])
                elif mtype == "subscribe" and not subscribed:
                    subscribed = True
                    self._on_connect()
                    self._healthy.set()
                    self._wake(None)
                elif mtype == "pong":
                    last_pong = now
            if now >= next_ping:
                if now - last_pong > 2 * _PING_EVERY + _READ_TIMEOUT:
                    raise redis.exceptions.TimeoutError("notifier: no PONG from Redis")
                pubsub.ping()
                next_ping = now + _PING_EVERY
