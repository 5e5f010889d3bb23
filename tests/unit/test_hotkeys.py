"""HotKeys: a process's short trust in entries it saw become hot (pure)."""

from __future__ import annotations

from fleetcache.core.hotkeys import HotKeys


def test_trust_counts_reads_and_ends_on_time() -> None:
    """A remembered hot key is trusted until its deadline; the reads it served are handed
    over once, then counting starts again."""
    hot = HotKeys()
    assert hot.trusted("k", 0.0) is None
    hot.remember("k", slid_ms=5000, trust_for=1.0, now=10.0)
    assert hot.trusted("k", 10.5) == 5000
    assert hot.trusted("k", 10.9) == 5000
    assert hot.trusted("k", 11.0) is None  # trust over: run the script
    assert hot.take_pending("k") == 2
    assert hot.take_pending("k") == 0


def test_pending_reads_survive_a_new_remember() -> None:
    """Reads counted before the script's reply are not lost when the key is remembered
    again (they go to the next run)."""
    hot = HotKeys()
    hot.remember("k", 1, 1.0, 0.0)
    hot.trusted("k", 0.1)
    hot.remember("k", 2, 1.0, 0.2)
    assert hot.trusted("k", 0.3) == 2
    assert hot.take_pending("k") == 2


def test_capacity_forgets_the_oldest() -> None:
    """Past its capacity the oldest remembered key is forgotten first."""
    hot = HotKeys(capacity=2)
    hot.remember("a", 1, 10.0, 0.0)
    hot.remember("b", 1, 10.0, 0.0)
    hot.remember("c", 1, 10.0, 0.0)
    assert len(hot) == 2
    assert hot.trusted("a", 1.0) is None
    assert hot.trusted("c", 1.0) == 1
    hot.forget("c")
    assert hot.trusted("c", 1.0) is None
