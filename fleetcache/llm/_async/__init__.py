"""The asyncio source of the cached SDK endpoints (``../_sync`` is generated from it)."""
