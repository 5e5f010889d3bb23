"""The sync twins are generated from the asyncio source, and drift is caught."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "unasync.py"


def run_check(root: Path) -> subprocess.CompletedProcess[str]:
    """Run the drift check of the tree at ``root``."""
    return subprocess.run([sys.executable, str(root / "scripts" / "unasync.py"), "--check"],
                          capture_output=True, text=True, check=False)


def test_repository_has_no_drift() -> None:
    """The committed _sync files are exactly what the generator makes from _async."""
    result = run_check(ROOT)
    assert result.returncode == 0, result.stderr


def test_hand_edit_of_a_generated_file_fails_the_check(tmp_path: Path) -> None:
    """Editing a generated twin by hand makes --check exit 1 and name the file."""
    shutil.copytree(ROOT / "fleetcache", tmp_path / "fleetcache",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "unasync.py")
    assert run_check(tmp_path).returncode == 0
    twin = tmp_path / "fleetcache" / "locking" / "_sync" / "setnx.py"
    twin.write_text(twin.read_text().replace("nx=True", "nx=False"))
    result = run_check(tmp_path)
    assert result.returncode == 1
    assert "fleetcache/locking/_sync/setnx.py" in result.stderr


def test_editing_the_source_without_regenerating_fails_the_check(tmp_path: Path) -> None:
    """Changing the asyncio source without regenerating is drift too."""
    shutil.copytree(ROOT / "fleetcache", tmp_path / "fleetcache",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "unasync.py")
    src = tmp_path / "fleetcache" / "core" / "_async" / "cache.py"
    src.write_text(src.read_text() + "\n# a change\n")
    assert run_check(tmp_path).returncode == 1


def test_rules_map_async_constructs_to_sync() -> None:
    """The rule list turns awaits, async defs, async names and imports into sync ones."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import unasync  # noqa: PLC0415  (scripts/ is not a package)
    finally:
        sys.path.pop(0)
    src = (
        "from redis import asyncio as aioredis\n"
        "from fleetcache.locking._async.base import AsyncLockBase\n"
        "class AsyncFoo(AsyncLockBase):\n"
        "    async def get(self, c: aioredis.Redis) -> None:\n"
        "        async with self.x:\n"
        "            await c.get('k')\n"
        "        await asyncio.sleep(1)\n"
    )
    out = unasync.transform(src, ROOT / "fleetcache" / "x" / "_async" / "y.py")
    assert "import redis\n" in out
    assert "from fleetcache.locking._sync.base import LockBase" in out
    assert "class Foo(LockBase):" in out
    assert "    def get(self, c: redis.Redis) -> None:" in out
    assert "        with self.x:" in out
    assert "            c.get('k')" in out
    assert "time.sleep(1)" in out
    assert "await" not in out
    assert "async" not in out.split("\n", 2)[2]
