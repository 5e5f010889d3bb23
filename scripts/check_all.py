"""The static gate run before the tests: lint, types, and the sync/async drift check.

    python scripts/check_all.py      # exit 1 when any check fails
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHECKS: list[tuple[str, list[str]]] = [
    ("sync twins match their asyncio source", [sys.executable, "scripts/unasync.py", "--check"]),
    ("ruff", [sys.executable, "-m", "ruff", "check", "."]),
    ("mypy --strict", [sys.executable, "-m", "mypy", "--strict"]),
]


def main() -> int:
    """Run every check; report each; exit 1 if any failed."""
    failed = []
    for name, cmd in CHECKS:
        result = subprocess.run(cmd, cwd=ROOT, check=False)
        print(f"[check] {name}: {'ok' if result.returncode == 0 else 'FAILED'}", flush=True)
        if result.returncode != 0:
            failed.append(name)
    if failed:
        print(f"[check] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
