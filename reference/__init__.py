"""Reference stores that pass the storekit conformance suite."""

from storekit.reference.memory import AsyncMemoryStore, MemoryStore

__all__ = ["AsyncMemoryStore", "MemoryStore"]
