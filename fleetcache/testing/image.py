"""Build the `fleetcache-redis:local` image from this machine's own redis-server binary.

No registry is needed: the image is `FROM scratch` and holds only the binary, the shared
libraries `ldd` lists for it and the dynamic loader, at the paths `ldd` reports. The image
carries the binary's sha256 as a label and is rebuilt when the binary changes.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from fleetcache.testing.nodes import NodeError, find_redis_server

IMAGE_TAG = "fleetcache-redis:local"
BINARY_IN_IMAGE = "/usr/local/bin/redis-server"
RECIPE_VERSION = "1"
_SHA_LABEL = "org.fleetcache.redis-sha256"
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


def make_context(binary: str, context: Path) -> None:
    """Lay out a build context in `context`: the Dockerfile and rootfs/ with binary and libs."""
    rootfs = context / "rootfs"
    # Copy contents, not symlinks: Debian's redis-server is a symlink to redis-check-rdb,
    # and Redis picks its mode from argv[0], so the file must be named redis-server.
    for source, target in [(binary, BINARY_IN_IMAGE)] + [
        (lib, lib) for lib in shared_libraries(binary)
    ]:
        dest = rootfs / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        dest.chmod(0o755)
    (rootfs / "tmp").mkdir(mode=0o1777, exist_ok=True)
    (context / "Dockerfile").write_text(DOCKERFILE)


def _image_matches(client: Any, sha: str) -> bool:
    import docker.errors  # noqa: PLC0415  (optional extra)

    try:
        image = client.images.get(IMAGE_TAG)
    except docker.errors.ImageNotFound:
        return False
    labels = image.labels or {}
    return bool(labels.get(_SHA_LABEL) == sha and labels.get(_RECIPE_LABEL) == RECIPE_VERSION)


def ensure_image(client: Any = None, binary: str | None = None, *, rebuild: bool = False) -> str:
    """Return IMAGE_TAG, building it first when missing or built from another binary.

    `client` is a `docker.DockerClient` (default: `docker.from_env(version="auto")`).
    """
    import docker  # noqa: PLC0415  (optional extra)

    own_client = client is None
    if own_client:
        client = docker.from_env(version="auto")
    try:
        binary = str(Path(binary or find_redis_server()).resolve())
        sha = binary_sha256(binary)
        if rebuild or not _image_matches(client, sha):
            with tempfile.TemporaryDirectory(prefix="fleetcache-image-") as tmp:
                make_context(binary, Path(tmp))
                client.images.build(
                    path=tmp,
                    tag=IMAGE_TAG,
                    rm=True,
                    forcerm=True,
                    pull=False,
                    labels={_SHA_LABEL: sha, _RECIPE_LABEL: RECIPE_VERSION},
                )
        return IMAGE_TAG
    finally:
        if own_client:
            client.close()
