"""Argument checks shared by the lock backends."""

from __future__ import annotations

from typing import Any

import pytest

from fleetcache.locking.checks import check_name, check_seconds


def test_durations_above_ten_years_are_refused() -> None:
    """(hardening item 10) Lock TTLs and waits above MAX_SECONDS (ten years) raise ValueError."""
    for value in (1e10, 1e17, 10 * 365 * 86400 + 1):
        with pytest.raises(ValueError, match="ttl"):
            check_seconds("ttl", value)
        with pytest.raises(ValueError, match="wait"):
            check_seconds("wait", value, allow_zero=True)


def test_bound_is_the_policy_bound() -> None:
    """Locks and Policy share one bound: MAX_SECONDS itself is accepted."""
    from fleetcache.core.policy import MAX_SECONDS  # noqa: PLC0415

    check_seconds("ttl", MAX_SECONDS)
    check_seconds("wait", float(MAX_SECONDS), allow_zero=True)


@pytest.mark.parametrize(
    ("value", "allow_zero", "exc"),
    [
        (0, False, ValueError),
        (-1.0, True, ValueError),
        (float("nan"), True, ValueError),
        (float("inf"), True, ValueError),
        (True, True, TypeError),
        ("1", False, TypeError),
    ],
)
def test_bad_durations_raise(value: Any, allow_zero: bool, exc: type[Exception]) -> None:
    """Zero (unless allowed), negatives, NaN, infinities and non-numbers are refused."""
    with pytest.raises(exc):
        check_seconds("ttl", value, allow_zero=allow_zero)


def test_zero_wait_is_allowed_when_asked() -> None:
    """A zero wait is valid where allow_zero is set."""
    check_seconds("wait", 0, allow_zero=True)


def test_lock_name_checked() -> None:
    """A lock name must be a non-empty str."""
    with pytest.raises(ValueError, match="empty"):
        check_name("")
    with pytest.raises(TypeError):
        check_name(3)  # type: ignore[arg-type]
