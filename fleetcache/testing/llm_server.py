"""A simulated OpenAI- and Anthropic-compatible LLM HTTP server, for tests, demos and examples.

```python
from fleetcache.testing.llm_server import FakeLLMServer

with FakeLLMServer(latency=0.2, chunk_delay=0.05) as srv:
    client = openai.OpenAI(api_key="test", base_url=srv.openai_base_url, max_retries=0)
    claude = anthropic.Anthropic(api_key="test", base_url=srv.anthropic_base_url)
    ...
    assert srv.calls_for("/v1/chat/completions") == 1
```

It answers `POST /v1/chat/completions`, `POST /v1/responses` and `POST /v1/messages` (with
`stream: true` too) in the exact wire formats the real SDKs parse; see
`fleetcache.testing.llm_wire` for the formats and for what is deterministic (the answer
text is `answer_text(model, prompt, system)`, ids and timestamps are fixed, so identical
requests get byte-identical replies). Special cases:

- non-empty `tools` with a `tool_choice` other than "none": a tool call, not text;
- a body that is not a JSON object with a `model`: HTTP 400; model "fail-500": HTTP 500
  (error bodies in the OpenAI style, Anthropic style on `/v1/messages`); other paths: 404.
  The SDKs retry a 500 (twice by default): pass `max_retries=0` to see a single call.

Counters (thread-safe; also readable from other processes with `GET /_fake/calls`, which
returns `{"total", "by_path", "completed", "abandoned"}`, and resettable with
`POST /_fake/reset`): every POST to a generation endpoint counts in `calls` and
`calls_for(path)` the moment it arrives, before the `latency` sleep, whatever its outcome.
`completed` counts streams whose last byte was written; `abandoned` counts streams the
client hung up on (a write failed). A client that disconnects after the last chunks sat in
the socket buffers counts as completed: use a `chunk_delay` to see abandonment. The server
learns of a disconnect (and finishes a stream) a moment after the client does: wait for a
counter with `srv.wait_for(lambda s: s.abandoned == 1)`, woken by every counter change.

Timing: `latency` seconds pass before the reply's headers (time to first byte), and
`chunk_delay` seconds between SSE events of a stream. Both, and `chunks` (text pieces per
stream), are plain attributes that may change while the server runs. Streams use HTTP/1.1
chunked transfer encoding, one HTTP chunk per SSE event, so clients see each event as it
is written; connections are kept alive between requests.

Run it by hand: `python -m fleetcache.testing.llm_server [--port 8000] [--latency 0.5]
[--chunk-delay 0.05] [--chunks 8]`.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from fleetcache.testing.llm_wire import ENDPOINTS, FAIL_MODEL, answer_text, build_reply

__all__ = ["FAIL_MODEL", "FakeLLMServer", "answer_text"]

_CALLS_PATH = "/_fake/calls"
_RESET_PATH = "/_fake/reset"
_JOIN_TIMEOUT = 10.0  # handlers end promptly once their sockets are cut; this is a backstop


class FakeLLMServer:
    """An in-process fake of the OpenAI and Anthropic HTTP APIs on a loopback port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        chunks: int = 8,
    ) -> None:
        address = socket.gethostbyname(host)
        if not ipaddress.ip_address(address).is_loopback:
            raise ValueError(f"{host!r} ({address}) is not a loopback address (127.0.0.0/8)")
        self.host = address
        self.port = port
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.chunks = chunks
        self._cond = threading.Condition()
        self._by_path: dict[str, int] = {}
        self._completed = 0
        self._abandoned = 0
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeLLMServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("FakeLLMServer already started")
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.fake = self
        httpd.handlers = []
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-llm-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: cut open connections, close the socket, join every thread.

        Requests in flight end at once: their clients get a connection error, and a stream
        cut short counts as `abandoned`. Idempotent; the counters stay readable.
        """
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()  # no more accepts
        with self._cond:
            for conn in self._conns:  # first, so that no reply goes out any more
                _cut(conn)
            self._stopping.set()  # then wake the latency / chunk-delay waits
        httpd.server_close()
        httpd.join_handlers(timeout=_JOIN_TIMEOUT)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT` (the port is known once started)."""
        if self._httpd is None:
            raise RuntimeError("FakeLLMServer is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """The `base_url` for `openai.OpenAI`: `url` + "/v1"."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The `base_url` for `anthropic.Anthropic`: `url` itself."""
        return self.url

    # -- counters -------------------------------------------------------------------------------

    @property
    def calls(self) -> int:
        """POSTs to generation endpoints so far (counted on arrival)."""
        with self._cond:
            return sum(self._by_path.values())

    def calls_for(self, path: str) -> int:
        """POSTs to generation endpoint `path` (e.g. "/v1/chat/completions") so far."""
        with self._cond:
            return self._by_path.get(path, 0)

    @property
    def completed(self) -> int:
        """Streams whose last chunk was fully written."""
        with self._cond:
            return self._completed

    @property
    def abandoned(self) -> int:
        """Streams cut short because the client disconnected."""
        with self._cond:
            return self._abandoned

    def counts(self) -> dict[str, Any]:
        """The counters as served by `GET /_fake/calls`."""
        with self._cond:
            return {
                "total": sum(self._by_path.values()),
                "by_path": dict(self._by_path),
                "completed": self._completed,
                "abandoned": self._abandoned,
            }

    def reset(self) -> None:
        """Zero every counter."""
        with self._cond:
            self._by_path.clear()
            self._completed = self._abandoned = 0
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[FakeLLMServer], bool], timeout: float = 5.0) -> bool:
        """Wait until `predicate(self)` holds, re-checked on every counter change; its result.

        For example `srv.wait_for(lambda s: s.abandoned == 1)`: the server learns of a
        client's disconnect asynchronously, so tests wait for the counter to move.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _count(self, path: str) -> None:
        with self._cond:
            self._by_path[path] = self._by_path.get(path, 0) + 1
            self._cond.notify_all()

    def _stream_ended(self, *, complete: bool) -> None:
        with self._cond:
            if complete:
                self._completed += 1
            else:
                self._abandoned += 1
            self._cond.notify_all()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._cond:
            if not add:
                self._conns.discard(conn)
            elif self._stopping.is_set():
                _cut(conn)
            else:
                self._conns.add(conn)


def _cut(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


class _HTTPServer(ThreadingHTTPServer):
    # Daemon handler threads (a forgotten server never blocks interpreter exit), which
    # socketserver does not track: they are kept here so that stop() can join them.
    daemon_threads = True
    fake: FakeLLMServer
    handlers: list[threading.Thread]

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a new daemon thread, remembered for `join_handlers`."""
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        self.handlers = [t for t in self.handlers if t.is_alive()]
        self.handlers.append(thread)
        thread.start()

    def join_handlers(self, timeout: float) -> None:
        """Wait (at most `timeout` seconds in all) for every handler thread to end."""
        deadline = time.monotonic() + timeout
        for thread in self.handlers:
            thread.join(max(0.0, deadline - time.monotonic()))

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that hang up; report anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, and chunked transfer encoding for streams

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.fake._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Print nothing."""

    def do_GET(self) -> None:
        """Counters at `/_fake/calls`; 404 elsewhere."""
        path = urlsplit(self.path).path
        if path == _CALLS_PATH:
            self._send_json(200, self.server.fake.counts())
        else:
            self._not_found(path)

    def do_POST(self) -> None:
        """A generation endpoint, `/_fake/reset`, or 404."""
        fake = self.server.fake
        path = urlsplit(self.path).path
        if path in ENDPOINTS:
            fake._count(path)
        length = self.headers.get("Content-Length", "0")
        raw = self.rfile.read(int(length) if length.isdigit() else 0)
        if path == _RESET_PATH:
            fake.reset()
            self._send_json(200, fake.counts())
            return
        if path not in ENDPOINTS:
            self._not_found(path)
            return
        if fake.latency > 0 and fake._stopping.wait(fake.latency):
            self.close_connection = True
            return
        reply = build_reply(path, raw, fake.chunks)
        if reply.frames is None:
            self._send_json(reply.status, reply.body)
            return
        complete = False
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for n, frame in enumerate(reply.frames):
                if n and fake.chunk_delay > 0:
                    fake._stopping.wait(fake.chunk_delay)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.write(b"0\r\n\r\n")
            complete = True
        except OSError:  # BrokenPipe / ConnectionReset: the client left, or stop() cut us off
            self.close_connection = True
        fake._stream_ended(complete=complete)

    def _send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client is gone: nothing to tell it
            self.close_connection = True

    def _not_found(self, path: str) -> None:
        message = f"Unknown path {path!r}."
        self._send_json(404, {"error": {"message": message, "type": "not_found", "code": None}})


def main(argv: list[str] | None = None) -> None:
    """Run a `FakeLLMServer` in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m fleetcache.testing.llm_server",
        description="A simulated OpenAI/Anthropic LLM server on 127.0.0.1, for tests and demos.",
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0: any free one)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument(
        "--chunk-delay", type=float, default=0.0, help="seconds between stream events"
    )
    parser.add_argument("--chunks", type=int, default=8, help="text pieces per stream")
    args = parser.parse_args(argv)
    srv = FakeLLMServer(
        port=args.port, latency=args.latency, chunk_delay=args.chunk_delay, chunks=args.chunks
    )
    with srv:
        print(f"Fake LLM server on {srv.url}", flush=True)
        print(f"  OpenAI:    base_url={srv.openai_base_url}", flush=True)
        print(f"  Anthropic: base_url={srv.anthropic_base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped", flush=True)


if __name__ == "__main__":
    main()
