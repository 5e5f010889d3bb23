"""A leader process for fault tests: runs one get_or_set whose compute hangs.

Usage: python leader_proc.py URL NAMESPACE COUNTER_KEY LOCK_TTL
The compute INCRs COUNTER_KEY (so the test sees it started) and then sleeps for a minute:
the test SIGKILLs or SIGSTOPs this process meanwhile.
"""

from __future__ import annotations

import sys
import time

import redis

from fleetcache import Cache, Policy

REQ = {"prompt": "leader dies"}


def main() -> None:
    """Run the hanging leader."""
    url, namespace, counter, lock_ttl = sys.argv[1:5]
    client = redis.Redis.from_url(url, socket_timeout=2)

    def compute() -> str:
        client.incr(counter)
        time.sleep(60)
        return "from the dead leader"

    cache = Cache(client, namespace=namespace, policy=Policy(lock_ttl=float(lock_ttl)))
    cache.get_or_set(REQ, compute)


if __name__ == "__main__":
    main()
