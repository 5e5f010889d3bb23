"""Prometheus exporter: ``fleetcache_<stat>_total`` counters and two latency histograms.

Imports ``prometheus_client``: reach it through :func:`fleetcache.metrics.register_prometheus`.

Per registry there is one collector and one pair of histograms, shared by every cache
registered there (prometheus_client refuses a metric name registered twice in one
registry), each series labelled with the cache's namespace.  The collector builds the
counters from ``cache.stats.snapshot()`` at scrape time; the histograms are fed by a
:class:`~fleetcache.Stats` listener.  When the last cache of a registry is unregistered,
the collector and the histograms leave the registry too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, Metric

from fleetcache.core.stats import FOLLOWER_WAIT_SECONDS, UPSTREAM_SECONDS, Listener, Stats
from fleetcache.metrics import _common
from fleetcache.metrics._common import CacheLike, Registration, Sources

UPSTREAM_METRIC = "fleetcache_upstream_seconds"
FOLLOWER_WAIT_METRIC = "fleetcache_follower_wait_seconds"
LABEL = "namespace"


class StatsCollector:
    """The ``fleetcache_<stat>_total`` counters of every cache in one registry."""

    def __init__(self, sources: Sources) -> None:
        self._sources = sources
        self._names = _common.counter_names()

    def _families(self) -> dict[str, CounterMetricFamily]:
        return {
            name: CounterMetricFamily(f"fleetcache_{name}", _common.counter_help(name),
                                      labels=[LABEL])
            for name in self._names
        }

    def describe(self) -> Iterator[Metric]:
        """The metric names (so that the registry refuses a clashing collector)."""
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        """Every counter of every namespace, read now."""
        families = self._families()
        for namespace, counts in sorted(self._sources.totals().items()):
            for name, family in families.items():
                family.add_metric([namespace], counts.get(name, 0))
        yield from families.values()


class _RegistryState:
    """What fleetcache registered in one registry."""

    def __init__(self, registry: CollectorRegistry, buckets: tuple[float, ...]) -> None:
        self.registry = registry
        self.buckets = buckets
        self.sources = Sources()
        self.registrations: dict[int, Registration] = {}  # by id() of the cache's Stats
        made: list[Histogram] = []
        try:  # a clash (say a metric of the same name) registers nothing
            self.upstream = Histogram(UPSTREAM_METRIC, _common.UPSTREAM_HELP, [LABEL],
                                      registry=registry, buckets=buckets)
            made.append(self.upstream)
            self.follower = Histogram(FOLLOWER_WAIT_METRIC, _common.FOLLOWER_WAIT_HELP,
                                      [LABEL], registry=registry, buckets=buckets)
            made.append(self.follower)
            self.collector = StatsCollector(self.sources)
            registry.register(self.collector)
        except BaseException:
            for histogram in made:
                registry.unregister(histogram)
            raise

    def close(self) -> None:
        for part in (self.collector, self.upstream, self.follower):
            self.registry.unregister(part)


_STATES: dict[int, _RegistryState] = {}  # by id() of the registry (the state holds it)


def normalized(buckets: Sequence[float]) -> tuple[float, ...]:
    """``buckets`` as prometheus_client keeps them: floats, ending with +Inf."""
    out = tuple(float(b) for b in buckets)
    if not out or list(out) != sorted(out) or len(set(out)) != len(out):
        raise ValueError(f"buckets must be increasing and not empty, not {buckets!r}")
    return out if out[-1] == math.inf else (*out, math.inf)


def register(
    cache: CacheLike,
    registry: CollectorRegistry | None = None,
    *,
    buckets: Sequence[float] = _common.DEFAULT_BUCKETS,
) -> Registration:
    """See :func:`fleetcache.metrics.register_prometheus`."""
    namespace, stats = _common.checked(cache)
    if registry is None:
        registry = REGISTRY
    wanted = normalized(buckets)
    with _common.LOCK:
        state = _STATES.get(id(registry))
        if state is None:
            state = _STATES[id(registry)] = _RegistryState(registry, wanted)
        elif state.buckets != wanted:
            raise ValueError(
                f"this registry's fleetcache histograms already use buckets {state.buckets}; "
                "every cache registered in one registry must use the same buckets"
            )
        known = state.registrations.get(id(stats))
        if known is not None:
            return known  # the same cache again: one export, the same handle
        children = {
            UPSTREAM_SECONDS: state.upstream.labels(namespace),
            FOLLOWER_WAIT_SECONDS: state.follower.labels(namespace),
        }

        def listener(name: str, seconds: float) -> None:
            child = children.get(name)
            if child is not None:
                child.observe(seconds)

        def detach() -> None:
            _detach(state, namespace, stats, listener)

        stats.add_listener(listener)
        state.sources.add(namespace, stats)
        registration = state.registrations[id(stats)] = Registration(namespace, detach)
        return registration


def _detach(
    state: _RegistryState, namespace: str, stats: Stats, listener: Listener
) -> None:
    """Under the lock: take one cache out of its registry's exports."""
    stats.remove_listener(listener)
    del state.registrations[id(stats)]
    if state.sources.remove(stats):  # the namespace's last cache: drop its histograms
        state.upstream.remove(namespace)
        state.follower.remove(namespace)
    if not state.registrations:
        state.close()
        del _STATES[id(state.registry)]
