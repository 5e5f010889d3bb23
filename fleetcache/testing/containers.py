"""Container provider: Redis nodes as testcontainers on the host network, bound to 127.0.0.1.

The image is built locally (see `image.py`), so no registry is needed; the Ryuk reaper is
disabled because its image cannot be pulled either. In its place, containers are named
after their owner (PID namespace and PID), and a new provider removes the containers of
owners that died without cleaning up.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

from fleetcache.testing.image import ensure_image
from fleetcache.testing.nodes import (
    START_TIMEOUT,
    NodeError,
    NodeProvider,
    RedisNode,
    free_port,
    is_address_in_use,
    ping,
    wait_port_closed,
)

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

_NAME_PREFIX = "fleetcache-redis-"
_PORT_ATTEMPTS = 5
_STOP_GRACE_SECONDS = 5


def _pid_namespace_id() -> str:
    """The inode number of this process's PID namespace ("0" if unknown)."""
    try:
        return os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        return "0"


def docker_client() -> Any:
    """A docker SDK client with API version negotiation (the server here speaks 1.41)."""
    import docker  # noqa: PLC0415  (optional extra)

    return docker.from_env(version="auto")


def docker_available(timeout: float = 2.0) -> bool:
    """True when testcontainers is importable and a Docker engine answers a ping in time."""
    try:
        import docker  # noqa: PLC0415
        import testcontainers.core.container  # noqa: F401, PLC0415

        client = docker.from_env(version="auto", timeout=max(1, round(timeout)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


class ContainerNode(RedisNode):
    """A Redis server in a container sharing the host's network namespace."""

    kind = "containers"

    def __init__(self, image: str, port: int, args: Sequence[str]) -> None:
        super().__init__(port, args)
        self.image = image
        self.container: Any = None  # testcontainers DockerContainer

    @property
    def _wrapped(self) -> Any:  # docker.models.containers.Container
        if self.container is None:
            raise NodeError(f"{self!r} is not running")
        return self.container.get_wrapped_container()

    def _status(self) -> str:
        if self.container is None:
            return "absent"
        import docker.errors  # noqa: PLC0415

        try:
            wrapped = self.container.get_wrapped_container()
            wrapped.reload()
            return str(wrapped.status)
        except docker.errors.NotFound:
            return "absent"

    @property
    def is_running(self) -> bool:
        """True while the container runs (a paused container is still running)."""
        return self._status() in ("running", "paused")

    def _launch(self) -> None:
        from testcontainers.core.container import DockerContainer  # noqa: PLC0415

        name = f"{_NAME_PREFIX}{_pid_namespace_id()}-{os.getpid()}-{self.port}-"
        container = (
            DockerContainer(self.image, docker_client_kw={"version": "auto"})
            .with_command(["--port", str(self.port), *self.args, "--daemonize", "no"])
            .with_name(name + uuid.uuid4().hex[:8])
            .with_kwargs(network_mode="host")
        )
        self.container = container
        container.start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            info = ping(self.host, self.port, timeout=0.5)
            # Our server is PID 1 of its container; a foreign process on the port is not.
            if info is not None and int(info.get("process_id", -1)) == 1 and self.is_running:
                return
            status = self._status()
            if status not in ("running", "created") or time.monotonic() > deadline:
                logs = self.logs()
                self._remove()
                raise NodeError(f"container for port {self.port} is {status}:\n{logs}")
            time.sleep(0.01)

    def logs(self) -> str:
        """The container's output so far."""
        with contextlib.suppress(Exception):
            out, err = self.container.get_logs()
            return bytes(out + err).decode(errors="replace")
        return "(no logs)"

    def _remove(self) -> None:
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.stop(force=True)
            self.container = None
        self.paused = False

    def stop(self) -> None:
        """Unpause if paused, `docker stop` (SIGTERM, then SIGKILL), remove, wait for the port."""
        if self.container is None:
            return
        with contextlib.suppress(Exception):
            if self._status() == "paused":
                self._wrapped.unpause()
            self._wrapped.stop(timeout=_STOP_GRACE_SECONDS)
        self._remove()
        wait_port_closed(self.host, self.port)

    def kill(self) -> None:
        """`docker kill` (SIGKILL), remove the container, wait until the port is closed."""
        if self.container is None:
            return
        with contextlib.suppress(Exception):
            self._wrapped.kill()
        self._remove()
        wait_port_closed(self.host, self.port)

    def _pause(self) -> None:
        self._wrapped.pause()

    def _resume(self) -> None:
        self._wrapped.unpause()


class ContainerProvider(NodeProvider):
    """Starts Redis containers from the locally built `fleetcache-redis:local` image."""

    kind = "containers"

    def __init__(self, image: str | None = None) -> None:
        client = docker_client()
        try:
            self.image = image or ensure_image(client)
            reap_orphans(client)
        finally:
            client.close()
        super().__init__()

    def _start_one(self, args: Sequence[str]) -> RedisNode:
        last_error: NodeError | None = None
        for _ in range(_PORT_ATTEMPTS):
            node = ContainerNode(self.image, free_port(), args)
            try:
                node._launch()
            except NodeError as exc:
                if not is_address_in_use(str(exc)):
                    raise
                last_error = exc  # the port was taken between free_port() and bind
                continue
            return node
        raise NodeError(f"no free port after {_PORT_ATTEMPTS} attempts") from last_error


def reap_orphans(client: Any) -> int:
    """Remove containers left by dead owners of this PID namespace; return how many."""
    removed = 0
    prefix = f"{_NAME_PREFIX}{_pid_namespace_id()}-"
    for container in client.containers.list(all=True, filters={"name": _NAME_PREFIX}):
        name = str(container.name)
        if not name.startswith(prefix):
            continue
        try:
            owner = int(name.removeprefix(prefix).split("-", 1)[0])
            os.kill(owner, 0)
        except ProcessLookupError:
            with contextlib.suppress(Exception):
                container.remove(force=True)
                removed += 1
        except (ValueError, PermissionError):
            continue
    return removed
