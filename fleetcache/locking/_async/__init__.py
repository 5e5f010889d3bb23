"""The asyncio source of the lock backends; ../_sync is generated from it."""
