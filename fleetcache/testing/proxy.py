"""A loopback TCP proxy that injects network faults between a client and a Redis node.

One I/O thread runs a selector loop over every socket, and every fault command is executed
by that thread; a command returns once it has taken effect. Faults:

- `cut()`: close every connection and refuse new ones (the listener is closed).
- `blackhole()`: accept and keep connections, forward nothing: bytes are swallowed.
- `delay(s)`: hold each chunk `s` seconds before forwarding it, in both directions, so a
  request/reply round trip gains about `2 * s`.
- `reset()`: abort every current connection with a TCP RST (SO_LINGER 0); new connections
  are served as before.
- `heal()`: back to plain forwarding (re-opening the listener on the same port after a cut).

Both ends must be on 127.0.0.0/8: no traffic can leave the machine.
"""

from __future__ import annotations

import contextlib
import queue
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from fleetcache.testing.nodes import LOOPBACK, ensure_loopback

_CHUNK = 65536
_MAX_BUFFERED = 1 << 20  # stop reading a side whose peer has this much pending
_COMMAND_TIMEOUT = 10.0


@dataclass(eq=False)
class _Conn:
    """One proxied connection: the accepted client socket and its upstream socket."""

    client: socket.socket
    upstream: socket.socket
    # Chunks waiting to be written to each socket, with the monotonic time they are due.
    pending: dict[socket.socket, deque[tuple[float, bytes]]] = field(default_factory=dict)
    closing: bool = False  # one side hung up: flush what is pending, then close both

    def peer(self, sock: socket.socket) -> socket.socket:
        return self.upstream if sock is self.client else self.client

    def queued(self, sock: socket.socket) -> int:
        return sum(len(data) for _, data in self.pending[sock])


class FaultProxy:
    """Forward 127.0.0.1:`port` to `target_host:target_port`, with injectable faults."""

    def __init__(self, target_host: str, target_port: int, *, port: int = 0) -> None:
        self.target = (ensure_loopback(target_host), target_port)
        self.host = LOOPBACK
        self.port = port
        self.mode = "forward"  # forward | blackhole | cut
        self.latency = 0.0
        self._listener: socket.socket | None = None
        self._conns: set[_Conn] = set()
        self._owner: dict[socket.socket, _Conn] = {}
        self._commands: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]]
        self._commands = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._registered: dict[socket.socket, int] = {}
        self._thread: threading.Thread | None = None
        self._running = False

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0` of the proxy's listening side."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def connections(self) -> int:
        """How many proxied connections are open right now."""
        return len(self._conns)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- public commands --------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Bind the listener (a free port unless one was given) and start forwarding."""
        if self._thread is not None:
            raise RuntimeError("proxy already started")
        self._open_listener()
        self._running = True
        self._thread = threading.Thread(
            target=self._loop, name=f"FaultProxy:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def cut(self) -> None:
        """Close every connection and refuse new ones until `heal()`."""
        self._run(self._do_cut)

    def blackhole(self) -> None:
        """Keep connections open (and accept new ones) but swallow every byte.

        A side that hangs up still closes the connection (so a killed node is noticed).
        """
        self._run(self._do_blackhole)

    def delay(self, seconds: float) -> None:
        """Hold every forwarded chunk `seconds` before sending it on (each direction)."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self._run(lambda: setattr(self, "latency", float(seconds)))

    def reset(self) -> None:
        """Abort every current connection with a TCP RST; later ones are served."""
        self._run(lambda: self._close_all(abort=True))

    def heal(self) -> None:
        """Return to plain forwarding with no delay (re-open the listener after a cut)."""
        self._run(self._do_heal)

    def stop(self) -> None:
        """Close every socket and stop the I/O thread (idempotent)."""
        if self._thread is not None and self._running:
            self._run(self._do_stop)
            self._thread.join(_COMMAND_TIMEOUT)
        self._thread = None
        for sock in (self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    # -- command bodies (run on the I/O thread) -----------------------------------------

    def _run(self, command: Callable[[], None]) -> None:
        if self._thread is None or not self._running:
            raise RuntimeError("proxy is not running")
        done = threading.Event()
        self._commands.put((command, done))
        self._wake_w.send(b"x")
        if not done.wait(_COMMAND_TIMEOUT):
            raise RuntimeError("proxy I/O thread did not answer")

    def _open_listener(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener

    def _do_cut(self) -> None:
        self.mode = "cut"
        if self._listener is not None:
            self._discard(self._listener)
            self._listener = None
        self._close_all(abort=False)

    def _do_blackhole(self) -> None:
        self.mode = "blackhole"
        for conn in self._conns:
            for chunks in conn.pending.values():
                chunks.clear()

    def _do_heal(self) -> None:
        self.mode = "forward"
        self.latency = 0.0
        if self._listener is None:
            self._open_listener()

    def _do_stop(self) -> None:
        self._running = False  # the loop ends and closes every socket on its way out

    def _close_all(self, *, abort: bool) -> None:
        for conn in list(self._conns):
            self._close(conn, abort=abort)

    def _close(self, conn: _Conn, *, abort: bool = False) -> None:
        self._conns.discard(conn)
        for sock in (conn.client, conn.upstream):
            self._owner.pop(sock, None)
            with contextlib.suppress(OSError):
                if abort:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._discard(sock)

    def _discard(self, sock: socket.socket) -> None:
        """Unregister `sock` from the selector *before* closing it (its fd may be reused)."""
        if self._registered.pop(sock, None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(sock)
        with contextlib.suppress(OSError):
            sock.close()

    # -- the I/O loop -------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2.0)
        except OSError:
            client.close()  # the node is down: the client sees the connection closed
            return
        conn = _Conn(client, upstream)
        for sock in (client, upstream):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.pending[sock] = deque()
            self._owner[sock] = conn
        self._conns.add(conn)

    def _receive(self, sock: socket.socket, conn: _Conn, now: float) -> None:
        try:
            data = sock.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            conn.closing = True
        elif self.mode == "forward":
            conn.pending[conn.peer(sock)].append((now + self.latency, data))

    def _flush(self, conn: _Conn, now: float) -> None:
        for sock, chunks in conn.pending.items():
            while chunks and chunks[0][0] <= now:
                due, data = chunks[0]
                try:
                    sent = sock.send(data)
                except BlockingIOError:
                    break
                except OSError:
                    self._close(conn)
                    return
                if sent < len(data):
                    chunks[0] = (due, data[sent:])
                    break
                chunks.popleft()
        if conn.closing and not any(conn.pending.values()):
            self._close(conn)

    def _interest(self, now: float) -> tuple[dict[socket.socket, int], float]:
        """What to wait for on each socket, and how long until the next chunk is due."""
        wanted: dict[socket.socket, int] = {self._wake_r: selectors.EVENT_READ}
        if self._listener is not None:
            wanted[self._listener] = selectors.EVENT_READ
        timeout = 0.5
        for conn in self._conns:
            for sock, chunks in conn.pending.items():
                events = 0
                if not conn.closing and conn.queued(conn.peer(sock)) < _MAX_BUFFERED:
                    events |= selectors.EVENT_READ
                if chunks:
                    if chunks[0][0] <= now:
                        events |= selectors.EVENT_WRITE
                    else:
                        timeout = min(timeout, chunks[0][0] - now)
                if events:
                    wanted[sock] = events
        return wanted, max(timeout, 0.0)

    def _loop(self) -> None:
        try:
            self._serve()
        finally:  # even if a bug kills the loop, leave no socket open behind it
            self._running = False
            self._close_all(abort=False)
            if self._listener is not None:
                self._discard(self._listener)
                self._listener = None

    def _serve(self) -> None:
        while self._running:
            now = time.monotonic()
            for conn in list(self._conns):
                self._flush(conn, now)
            wanted, timeout = self._interest(now)
            for sock in [s for s in self._registered if s not in wanted]:
                self._selector.unregister(sock)
                del self._registered[sock]
            for sock, events in wanted.items():
                if sock not in self._registered:
                    self._selector.register(sock, events)
                elif self._registered[sock] != events:
                    self._selector.modify(sock, events)
                self._registered[sock] = events
            for key, _ in self._selector.select(timeout):
                ready = key.fileobj
                if ready is self._wake_r:
                    self._drain_commands()
                elif ready is self._listener:
                    self._accept()
                elif isinstance(ready, socket.socket) and ready in self._owner:
                    self._receive(ready, self._owner[ready], time.monotonic())

    def _drain_commands(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(4096)
        while True:
            try:
                command, done = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                command()
            finally:
                done.set()
