"""The lease a lock backend hands out; the caller holds it, the backend keeps nothing."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

#: Random bytes in every lease token (hex-encoded, so twice as many characters).
TOKEN_BYTES = 16


def new_token() -> str:
    """A fresh unguessable lease token: 16 random bytes from :mod:`secrets`, hex."""
    return secrets.token_hex(TOKEN_BYTES)


def drift(ttl: float) -> float:
    """Clock-drift allowance subtracted from a lease's validity: 1 % of the TTL + 2 ms."""
    return ttl * 0.01 + 0.002


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof of holding lock ``name``.

    ``token`` identifies the holder (release and extend compare it); ``fence`` is a fencing
    token that grows with every grant where the backend provides one; ``valid_until`` is on
    :func:`time.monotonic`'s clock, measured from *before* the request was sent and reduced
    by the drift allowance, so the lease is never believed valid longer than it is.
    """

    name: str
    token: str
    fence: int | None
    valid_until: float

    def renewed(self, valid_until: float) -> Lease:
        """This lease with a new validity bound."""
        return replace(self, valid_until=valid_until)
