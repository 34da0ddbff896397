"""A store behind a switch: while the switch is on, every call raises StoreUnavailable.

This is how a probe offers ``POST /outage?on=1``: the app's store fails as a
store that is down fails, on every method, and works again with ``on=0``. The
wrapper has ``touch``, ``replace``, ``length``, ``clear`` and ``all`` exactly
when the store it wraps has them, so the shell sees the wrapped store's
capabilities (a ``replace`` it lacked would change how the shell writes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from storekit.contract import AsyncStore, Session, Store, check_store
from storekit.errors import StoreUnavailable

__all__ = ["OPTIONAL", "AsyncOutageStore", "Outage", "OutageStore"]

OPTIONAL = ("touch", "replace", "length", "clear", "all")
"""The optional methods of the contract, forwarded when the wrapped store has them."""


class Outage:
    """The switch; ``on`` is flipped by ``POST /outage``."""

    def __init__(self) -> None:
        self.on = False

    def check(self, method: str) -> None:
        if self.on:
            raise StoreUnavailable(
                f"{method}(): the probe's store is switched off (POST /outage?on=0 switches it back on)"
            )


def _optional(inner: object) -> list[tuple[str, Callable[..., Any]]]:
    found = ((name, getattr(inner, name, None)) for name in OPTIONAL)
    return [(name, method) for name, method in found if callable(method)]


class OutageStore:
    """A sync store that forwards to ``inner`` while ``outage`` is off."""

    def __init__(self, inner: Store, outage: Outage | None = None) -> None:
        self.inner: Store = check_store(inner, "OutageStore", kind="sync")
        self.outage = outage or Outage()
        for name, method in _optional(inner):
            setattr(self, name, self._guarded(name, method))

    def _guarded(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(*args: Any) -> Any:
            self.outage.check(name)
            return method(*args)

        return guarded

    def get(self, sid: str) -> Session | None:
        self.outage.check("get")
        return self.inner.get(sid)

    def set(self, sid: str, session: Session) -> None:
        self.outage.check("set")
        self.inner.set(sid, session)

    def destroy(self, sid: str) -> None:
        self.outage.check("destroy")
        self.inner.destroy(sid)

    def __repr__(self) -> str:
        return f"OutageStore({self.inner!r})"


class AsyncOutageStore:
    """:class:`OutageStore` for an async store."""

    def __init__(self, inner: AsyncStore, outage: Outage | None = None) -> None:
        self.inner: AsyncStore = check_store(inner, "AsyncOutageStore", kind="async")
        self.outage = outage or Outage()
        for name, method in _optional(inner):
            setattr(self, name, self._guarded(name, method))

    def _guarded(self, name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def guarded(*args: Any) -> Any:
            self.outage.check(name)
            return await method(*args)

        return guarded

    async def get(self, sid: str) -> Session | None:
        self.outage.check("get")
        return await self.inner.get(sid)

    async def set(self, sid: str, session: Session) -> None:
        self.outage.check("set")
        await self.inner.set(sid, session)

    async def destroy(self, sid: str) -> None:
        self.outage.check("destroy")
        await self.inner.destroy(sid)

    def __repr__(self) -> str:
        return f"AsyncOutageStore({self.inner!r})"
