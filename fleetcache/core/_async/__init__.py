"""The asyncio source of the cache flow; ../_sync is generated from it."""
