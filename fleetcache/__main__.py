"""``python -m fleetcache``: demo, bench, stats, invalidate, purge, doctor.

Run ``python -m fleetcache --help`` for the commands; see :mod:`fleetcache.cli`.
"""

from __future__ import annotations

import sys

from fleetcache.cli import main as _cli_main


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: run the command in ``argv`` and return its exit status."""
    return _cli_main(argv)


if __name__ == "__main__":  # not under multiprocessing's spawn (run as __mp_main__)
    sys.exit(main())
