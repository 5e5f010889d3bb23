"""One pub/sub subscription per cache, multiplexed to every waiting thread (ARCHITECTURE §6).

A background thread owns the subscription to the namespace's events channel (the wire
format is :mod:`fleetcache.core.events`).  A follower registers a :class:`Waiter` for its
entry key *before* it looks at Redis again, so a notification published after that look
cannot be lost while the subscription is up; when it is down, followers fall back to
their jittered poll.

The thread survives anything a socket, a server or a message can do to it: malformed
messages are counted and ignored, and any exception in a session (a dropped or black-holed
connection, an error reply, a stall, a failing ``on_connect``) ends that session only: every
waiter is woken (they re-check and fall back to polling), and the thread reconnects after a
jittered back-off — up to ``backoff_max``, or ``refused_backoff_max`` when Redis refused the
subscription itself (an ACL without channel permission will not heal in two seconds).  A
PING every few seconds detects a black-holed connection.  If the thread ever ends anyway,
:meth:`Notifier.ensure_running` starts a new one.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable

import redis

from fleetcache.backend import Client, is_outage, reply_code
from fleetcache.clusters import ClusterSubscriber
from fleetcache.core import events
from fleetcache.core.throttle import Throttle

log = logging.getLogger("fleetcache.notifier")

PING_EVERY = 2.0
READ_TIMEOUT = 0.25


class WaiterBase:
    """A registration for one entry key's notifications (use as a context manager)."""

    __slots__ = ("_key", "_registry")

    def __init__(self, registry: Registry, key: str) -> None:
        self._registry = registry
        self._key = key

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

    def __init__(self, on_bad_message: Callable[[], None] | None = None) -> None:
        self._on_bad_message = on_bad_message
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

    def wake(self, key: str | None) -> None:
        """Wake the waiters of ``key``, or all of them when ``key`` is None."""
        with self._guard:
            if key is None:
                targets = [w for ws in self._waiters.values() for w in ws]
            else:
                targets = list(self._waiters.get(key, ()))
        for w in targets:
            w.wake()

    def dispatch(self, data: object) -> int | None:
        """Act on one message; return the generation it announces, if any.

        A generation is only a hint: the notifier reads the generation key before the cache
        adopts anything.  Malformed messages are counted and ignored; this never raises.
        """
        event = events.parse(data)
        if event is None:
            if self._on_bad_message is not None:
                self._on_bad_message()
            log.debug("ignoring a malformed events message %.80r", data)
            return None
        if event.kind == events.GENERATION:
            return event.generation
        self.wake(event.key)
        return None


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
    delay = min(cap, base * 2 ** (min(failures, 32) - 1))
    return random.uniform(delay / 2, delay)


def ping_overdue(now: float, last_pong: float) -> bool:
    """True when the last PONG is too old: the connection is black-holed."""
    return now - last_pong > 2 * PING_EVERY + READ_TIMEOUT


class SessionLog:
    """Logs a failing subscription once a minute per kind of failure, not once per retry."""

    def __init__(self, channel: str) -> None:
        self._channel = channel
        self._throttle = Throttle(60.0)
        self._failing = False

    @staticmethod
    def refused(exc: BaseException) -> bool:
        """True when Redis refused (rather than failed to serve) the subscription."""
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        return isinstance(cause, redis.exceptions.ResponseError) and not is_outage(cause)

    def failed(self, exc: BaseException) -> None:
        """Report a failed session: a warning when this kind was not reported lately."""
        self._failing = True
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        kind = f"{type(cause).__name__}:{reply_code(cause) if self.refused(exc) else ''}"
        level = logging.WARNING if self._throttle.allow(kind) else logging.DEBUG
        if self.refused(exc) and reply_code(cause) == "NOPERM":
            log.log(
                level,
                "Redis refused the subscription to %s (%s): followers in this process will "
                "poll instead of being notified; allow the channel for this Redis user, "
                "e.g. ACL SETUSER <user> &%s",
                self._channel, cause, self._channel,
            )
        else:
            log.log(level, "subscription to %s failed (%s: %s); reconnecting",
                    self._channel, type(exc).__name__, exc)

    def recovered(self) -> None:
        """Report a subscription that is up again after failures."""
        if self._failing:
            log.info("subscribed to %s again", self._channel)
            self._failing = False


class Notifier:
    """Owns the subscription to ``channel`` and dispatches its messages (a thread).

    ``on_connect`` runs (in the notifier thread) after every (re)subscription, before the
    notifier reports itself healthy; ``on_generation`` receives each generation a message
    announces (a hint: it reads Redis before adopting anything).
    """

    def __init__(
        self,
        client: Client | ClusterSubscriber,
        channel: str,
        on_connect: Callable[[], None],
        on_generation: Callable[[int], None],
        *,
        on_bad_message: Callable[[], None] | None = None,
        backoff: float = 0.05,
        backoff_max: float = 2.0,
        refused_backoff_max: float = 30.0,
    ) -> None:
        self._client = client
        self._channel = channel
        self._on_connect = on_connect
        self._on_generation = on_generation
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._refused_backoff_max = refused_backoff_max
        self._guard = threading.Lock()
        self.registry = Registry(on_bad_message)
        self._healthy = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = SessionLog(channel)
        #: Consecutive failed sessions (0 while healthy, or before the first attempt ends).
        self.failures = 0
        self.reconnects = 0

    @property
    def healthy(self) -> bool:
        """True while subscribed: notifications are being delivered."""
        return self._healthy.is_set()

    def ensure_running(self) -> None:
        """Start the thread if it is not running (never started, stopped, or died)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._guard:
            thread = self._thread
            if thread is not None and thread.is_alive():
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, name=f"fleetcache-notifier:{self._channel}", daemon=True
            )
            self._thread.start()

    def wait_healthy(self, timeout: float) -> bool:
        """True once subscribed; waits up to ``timeout`` only while a first attempt is
        under way, never while the subscription is failing (callers then poll)."""
        if self._healthy.is_set():
            return True
        self.ensure_running()
        if self.failures:
            return False
        return self._healthy.wait(timeout)

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
        stop = self._stop
        while not stop.is_set():
            pubsub = None
            try:
                pubsub = self._client.pubsub()
                self._session(pubsub, stop)
            except Exception as exc:  # the thread must outlive any failure of a session
                self.failures += 1
                self._log.failed(exc)
                cap = self._refused_backoff_max if SessionLog.refused(exc) else self._backoff_max
                delay = backoff_delay(self.failures, self._backoff, cap)
            else:
                delay = 0.0
            finally:
                if self._healthy.is_set():
                    self.reconnects += 1
                self._healthy.clear()
                self.registry.wake(None)
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
            if delay:
                stop.wait(delay)

    def _session(self, pubsub: redis.client.PubSub, stop: threading.Event) -> None:
        pubsub.subscribe(self._channel)
        subscribed = False
        last_pong = time.monotonic()
        next_ping = last_pong + PING_EVERY
        while not stop.is_set():
            msg = pubsub.get_message(timeout=READ_TIMEOUT)
            now = time.monotonic()
            if msg is not None:
                mtype = msg.get("type")
                if mtype == "message":
                    hint = self.registry.dispatch(msg.get("data"))
                    if hint is not None:
                        self._on_generation(hint)
                elif mtype == "subscribe" and not subscribed:
                    subscribed = True
                    self._on_connect()
                    self.failures = 0
                    self._log.recovered()
                    self._healthy.set()
                    self.registry.wake(None)
                elif mtype == "pong":
                    last_pong = now
            if now >= next_ping:
                if ping_overdue(now, last_pong):
                    raise redis.exceptions.TimeoutError("notifier: no PONG from Redis")
                pubsub.ping()
                next_ping = now + PING_EVERY
