"""Policy validation and defaults."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fleetcache import Policy


def test_defaults_are_valid_and_frozen() -> None:
    """The default policy constructs and cannot be mutated."""
    p = Policy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.ttl = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "exc"),
    [
        ("ttl", 0, ValueError),
        ("ttl", -1.0, ValueError),
        ("ttl", float("inf"), ValueError),
        ("lock_ttl", "10", TypeError),
        ("wait_timeout", True, TypeError),
        ("poll_interval", 0.0, ValueError),
        ("fail_open", 1, TypeError),
        ("redis_timeout", float("nan"), ValueError),
        ("replica_acks", -1, ValueError),
        ("replica_acks", True, TypeError),
        ("replica_acks", 1.0, TypeError),
        ("replica_ack_timeout", 0, ValueError),
    ],
)
def test_bad_values_raise_at_once(field: str, value: Any, exc: type[Exception]) -> None:
    """Each bad tunable raises the right error at construction."""
    with pytest.raises(exc):
        Policy(**{field: value})


def test_backoff_bounds_checked() -> None:
    """retry_backoff_max below retry_backoff is refused."""
    with pytest.raises(ValueError, match="retry_backoff_max"):
        Policy(retry_backoff=2.0, retry_backoff_max=1.0)


def test_poll_interval_defaults_to_quarter_lock_ttl_capped() -> None:
    """The fallback poll is lock_ttl/4, at most 0.5 s, unless set explicitly."""
    assert Policy(lock_ttl=1.0).effective_poll_interval == 0.25
    assert Policy(lock_ttl=10.0).effective_poll_interval == 0.5
    assert Policy(poll_interval=0.1).effective_poll_interval == 0.1


DURATIONS = ["ttl", "lock_ttl", "wait_timeout", "max_hold", "poll_interval", "redis_timeout",
             "retry_backoff", "retry_backoff_max", "replica_ack_timeout"]


def _with(field: str, value: float) -> dict[str, Any]:
    """Policy kwargs setting ``field`` (and retry_backoff_max when it must stay above)."""
    kwargs: dict[str, Any] = {field: value}
    if field == "retry_backoff":
        kwargs["retry_backoff_max"] = value
    return kwargs


def test_wait_timeout_beyond_threading_timeout_max_is_refused() -> None:
    """(hardening item 10) wait_timeout=1e10 (past threading.TIMEOUT_MAX) raises at once."""
    with pytest.raises(ValueError, match="wait_timeout"):
        Policy(wait_timeout=1e10)


def test_ttl_beyond_redis_px_range_is_refused() -> None:
    """(hardening item 10) ttl=1e17 (past Redis's PX range) raises at once."""
    with pytest.raises(ValueError, match="ttl"):
        Policy(ttl=1e17)


@pytest.mark.parametrize("field", DURATIONS)
def test_every_duration_is_bounded_by_max_seconds(field: str) -> None:
    """(hardening item 10) Each duration accepts MAX_SECONDS and refuses anything above it."""
    from fleetcache.core.policy import MAX_SECONDS  # noqa: PLC0415

    assert MAX_SECONDS == 10 * 365 * 86400
    Policy(**_with(field, MAX_SECONDS))
    with pytest.raises(ValueError, match=field):
        Policy(**_with(field, MAX_SECONDS * 1.0001))


def test_policy_docstring_states_the_bound() -> None:
    """The Policy docstring documents the upper bound of durations."""
    assert "ten years" in (Policy.__doc__ or "")


def test_declared_tenacity_has_stop_before_delay() -> None:
    """(hardening item 10) pyproject requires tenacity>=8.3, the first with stop_before_delay."""
    import tomllib  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if d.startswith("tenacity")]
    floor = tuple(int(p) for p in spec.split(">=")[1].split(",")[0].split("."))
    assert floor >= (8, 3)
