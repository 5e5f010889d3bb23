"""Fork safety: objects that must start afresh in a forked child (ARCHITECTURE §10).

A child made by ``fork()`` (gunicorn workers, ``multiprocessing``) inherits a copy of the
parent's memory but only the thread that forked.  Whatever the other threads were doing is
frozen in the copy: a lock one of them held stays locked forever, an in-process flight they
ran never finishes, a notifier thread does not exist.  Every object that holds such state
registers here and gets its ``_after_fork()`` called in the child, before anything else
runs there.  The registry holds weak references: registering keeps nothing alive.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol


class ForkAware(Protocol):
    """An object that resets its process-local state in a forked child."""

    def _after_fork(self) -> None:
        """Drop what the parent's threads left behind (locks, flights, threads)."""
        ...


_REGISTERED: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def register(obj: ForkAware) -> None:
    """Call ``obj._after_fork()`` in every child forked from now on."""
    _REGISTERED.add(obj)


def _after_fork_in_child() -> None:
    for obj in list(_REGISTERED):
        obj._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
