"""Export a cache's counters and latencies to Prometheus or OpenTelemetry.

An optional extra (``pip install 'fleetcache[metrics]'``): importing this module imports
neither ``prometheus_client`` nor ``opentelemetry``; each register function imports its
library when called.

- Counters: every counter of :class:`~fleetcache.Stats` (hits, misses, upstream_calls,
  coalesced, followed, stale_served, writes_refused, fail_open, ...), read from
  ``cache.stats.snapshot()`` when the metrics are collected, so they are never counted
  twice and always agree with ``cache.stats``.
- Histograms, fed by a :meth:`Stats.add_listener <fleetcache.Stats.add_listener>`
  listener: the upstream time (how long ``compute`` took, for a miss's leader or a
  background refresh; computes run fail-open are not observed) and the follower wait (from
  a follower's first try of the lease to being served another worker's result through
  Redis; served followers only, as many as ``stats.followed``: time-outs and leader
  failures have their own counters).

Every series is labelled with the cache's namespace.  Several caches may share a
registry or meter; caches with the same namespace there are added up (per process and
namespace).  Registering a cache again in the same registry or meter returns the first
registration.  A forked child keeps its caches' registrations; its counters restart at
zero (a counter reset, which Prometheus and OpenTelemetry handle).  Works for
:class:`~fleetcache.Cache` and :class:`~fleetcache.AsyncCache` alike.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fleetcache.metrics._common import DEFAULT_BUCKETS, INSTALL_HINT, CacheLike, Registration

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter
    from prometheus_client import CollectorRegistry

__all__ = ["DEFAULT_BUCKETS", "Registration", "register_opentelemetry", "register_prometheus"]


def register_prometheus(
    cache: CacheLike,
    registry: CollectorRegistry | None = None,
    *,
    buckets: Sequence[float] = DEFAULT_BUCKETS,
) -> Registration:
    """Export ``cache`` to a Prometheus registry (default: ``prometheus_client.REGISTRY``).

    Adds ``fleetcache_<stat>_total`` counters (one per counter of Stats) and the
    histograms ``fleetcache_upstream_seconds`` and ``fleetcache_follower_wait_seconds``,
    all with a ``namespace`` label.  ``buckets`` (seconds) are the histograms'; every cache
    of one registry must use the same (ValueError otherwise).  Raises ImportError when
    prometheus_client is not installed; ``registration.unregister()`` stops the export.
    """
    _require("prometheus_client", "prometheus_client", "register_prometheus")
    from fleetcache.metrics import prometheus  # noqa: PLC0415 - an optional dependency

    return prometheus.register(cache, registry, buckets=buckets)


def register_opentelemetry(cache: CacheLike, meter: Meter | None = None) -> Registration:
    """Export ``cache`` through an OpenTelemetry meter (default: ``get_meter("fleetcache")``).

    Adds observable counters ``fleetcache.<stat>`` (one per counter of Stats) and the
    histograms ``fleetcache.upstream.duration`` and ``fleetcache.follower.wait.duration``
    (unit ``s``), all with a ``namespace`` attribute.  Raises ImportError when
    opentelemetry-api is not installed; ``registration.unregister()`` stops the export.
    """
    _require("opentelemetry.metrics", "opentelemetry-api", "register_opentelemetry")
    from fleetcache.metrics import otel  # noqa: PLC0415 - an optional dependency

    return otel.register(cache, meter)


def _require(module: str, distribution: str, function: str) -> None:
    """ImportError, saying what to install, when ``module`` cannot be imported."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"fleetcache.metrics.{function} needs {distribution}, which is not installed: "
            f"{INSTALL_HINT}"
        ) from exc
