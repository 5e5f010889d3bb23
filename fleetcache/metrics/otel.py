"""OpenTelemetry exporter: ``fleetcache.<stat>`` observable counters and two histograms.

Imports ``opentelemetry``: reach it through
:func:`fleetcache.metrics.register_opentelemetry`.

Per meter there is one set of instruments, shared by every cache registered with it (a
meter keeps the first instrument of a name and ignores the callbacks of a second), each
measurement carrying the cache's namespace as the ``namespace`` attribute.  The counters'
callbacks read ``cache.stats.snapshot()`` at collection time; the histograms
(``fleetcache.upstream.duration`` and ``fleetcache.follower.wait.duration``, in seconds)
are fed by a :class:`~fleetcache.Stats` listener.  The OpenTelemetry API cannot remove an
instrument: after the last cache of a meter is unregistered its instruments stay, and
report nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from fleetcache.core.stats import FOLLOWER_WAIT_SECONDS, UPSTREAM_SECONDS, Listener, Stats
from fleetcache.metrics import _common
from fleetcache.metrics._common import CacheLike, Registration, Sources

UPSTREAM_INSTRUMENT = "fleetcache.upstream.duration"
FOLLOWER_WAIT_INSTRUMENT = "fleetcache.follower.wait.duration"
ATTRIBUTE = "namespace"


class _MeterState:
    """The instruments fleetcache created on one meter, and the caches they report."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.sources = Sources()
        self.registrations: dict[int, Registration] = {}  # by id() of the cache's Stats
        bounds = list(_common.DEFAULT_BUCKETS)
        self.upstream = meter.create_histogram(
            UPSTREAM_INSTRUMENT, unit="s", description=_common.UPSTREAM_HELP,
            explicit_bucket_boundaries_advisory=bounds,
        )
        self.follower = meter.create_histogram(
            FOLLOWER_WAIT_INSTRUMENT, unit="s", description=_common.FOLLOWER_WAIT_HELP,
            explicit_bucket_boundaries_advisory=bounds,
        )
        for name in _common.counter_names():
            meter.create_observable_counter(
                f"fleetcache.{name}", callbacks=[self._callback(name)], unit="{event}",
                description=_common.counter_help(name),
            )

    def _callback(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(counts.get(name, 0), {ATTRIBUTE: namespace})
                for namespace, counts in self.sources.totals().items()
            ]

        return observe


_STATES: dict[int, _MeterState] = {}  # by id() of the meter (the state holds it)
_default_meter: Meter | None = None


def default_meter() -> Meter:
    """``metrics.get_meter("fleetcache")``, made once (so its instruments are made once)."""
    global _default_meter  # noqa: PLW0603 - one meter per process
    if _default_meter is None:
        from fleetcache import __version__  # noqa: PLC0415 - fleetcache imports us lazily

        _default_meter = metrics.get_meter("fleetcache", __version__)
    return _default_meter


def register(cache: CacheLike, meter: Meter | None = None) -> Registration:
    """See :func:`fleetcache.metrics.register_opentelemetry`."""
    namespace, stats = _common.checked(cache)
    with _common.LOCK:
        if meter is None:
            meter = default_meter()
        state = _STATES.get(id(meter))
        if state is None:
            state = _STATES[id(meter)] = _MeterState(meter)
        known = state.registrations.get(id(stats))
        if known is not None:
            return known  # the same cache again: one export, the same handle
        attributes = {ATTRIBUTE: namespace}
        histograms: dict[str, Histogram] = {
            UPSTREAM_SECONDS: state.upstream,
            FOLLOWER_WAIT_SECONDS: state.follower,
        }

        def listener(name: str, seconds: float) -> None:
            histogram = histograms.get(name)
            if histogram is not None:
                histogram.record(seconds, attributes)

        def detach() -> None:
            _detach(state, stats, listener)

        stats.add_listener(listener)
        state.sources.add(namespace, stats)
        registration = state.registrations[id(stats)] = Registration(namespace, detach)
        return registration


def _detach(state: _MeterState, stats: Stats, listener: Listener) -> None:
    """Under the lock: take one cache out of its meter's reports."""
    stats.remove_listener(listener)
    del state.registrations[id(stats)]
    state.sources.remove(stats)
