"""The session object of the async shells: :class:`storekit.session.Session` over an async store.

Everything that does not reach the store is the core's, unchanged: the
mapping, ``cookie``, ``touch()``, ``join_group()``/``leave_group()`` (written at
the end of the request), and the decisions. The five operations that reach the
store at once are coroutines with an ``a`` prefix, as Django names its async
twins: ``asave``, ``areload``, ``adestroy``, ``aregenerate``, ``aend_group``.
Each awaits the store, then records the outcome with the core's ``mark_*``
method. Their sync names raise a TypeError that names the coroutine: a sync
store call would block the event loop, and an async store cannot answer one.

:class:`WebSocketSession` is the read-only session a websocket gets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from storekit import agroups
from storekit.contract import AsyncStore
from storekit.contract import Session as Record
from storekit.live import adestroy_record, awrite_live
from storekit.session import Session

__all__ = ["AsyncSession", "AsyncStoreHolder", "WebSocketSession"]


class AsyncStoreHolder:
    """What an :class:`AsyncSession` hands the core as its (sync) store: the async store
    in ``.store``, behind sync methods that refuse, so no code path can block the loop."""

    def __init__(self, store: AsyncStore) -> None:
        self.store = store

    def _refuse(self, method: str) -> NoReturn:
        raise TypeError(
            f"{self.store!r} is an async store and was called synchronously ({method}()); under ASGI "
            "use the session's coroutines: await session.asave(), areload(), adestroy(), "
            "aregenerate(), aend_group(name)"
        )

    def get(self, sid: str) -> Record | None:
        self._refuse("get")

    def set(self, sid: str, session: Record) -> None:
        self._refuse("set")

    def destroy(self, sid: str) -> None:
        self._refuse("destroy")

    def __repr__(self) -> str:
        return f"AsyncStoreHolder({self.store!r})"


def _use_coroutine(method: str) -> NoReturn:
    raise TypeError(
        f"session.{method}() calls the store synchronously; under ASGI the store is async: "
        f"await session.a{method}(...)"
    )


class AsyncSession(Session):
    """A :class:`~storekit.session.Session` whose store operations are coroutines.

    Built by :func:`storekit.arequest.open_session` with an
    :class:`AsyncStoreHolder` as its store. It is what ``scope["session"]`` and
    Starlette's ``request.session`` hold under :class:`storekit.asgi.SessionMiddleware`.
    """

    @property
    def store(self) -> AsyncStore:
        """The async store this session reads and writes."""
        holder = self._store
        if not isinstance(holder, AsyncStoreHolder):
            raise TypeError(
                f"an AsyncSession needs an AsyncStoreHolder as its store, got {holder!r}; "
                "build it with storekit.arequest.open_session()"
            )
        return holder.store

    def mark_accessed(self) -> None:
        """Count the session as used (the response varies on ``Cookie``); Starlette's
        ``request.session`` calls this, as it does on its own session."""
        self.accessed = True

    def __ior__(self, other: Mapping[str, Any]) -> AsyncSession:
        self.update(other)
        return self

    # -- the store operations, awaited --------------------------------------

    async def asave(self) -> None:
        """Write the session to the store now (see :meth:`Session.save`: a loaded session only
        while it is still stored, else SessionNotFound and the cookie is deleted)."""
        self._writable()
        self.cookie.reset()
        record = self.to_record(self.request_secure)
        if self.is_new:
            await self.store.set(self.id, record)
        elif not await awrite_live(self.store, self.id, record):
            self.mark_vanished()
        self.mark_saved()

    async def areload(self) -> None:
        """Replace the data with what the store holds now; SessionNotFound if it is gone."""
        self._writable()
        self.mark_reloaded(await self.store.get(self.id))

    async def adestroy(self) -> None:
        """Remove the session from the store now; the response deletes the cookie."""
        self._skip_load()
        if self.in_store():
            await adestroy_record(self.store, self.id, self.config.clock(), marker=not self.is_new)
        self.mark_destroyed()

    async def aregenerate(self, *, keep_data: bool = False) -> None:
        """A new sid and the old record destroyed (do it at login); the data goes unless ``keep_data``."""
        if not keep_data:
            self._skip_load()
        if self.in_store():
            await adestroy_record(self.store, self.id, self.config.clock(), marker=not self.is_new)
        self.mark_regenerated(keep_data=keep_data)

    async def aend_group(self, name: str) -> int:
        """End every session of group ``name`` now, this one too if a member; returns how many it held."""
        self._ensure()
        store, clock = self.store, self.config.clock
        ended = await agroups.end_group(store, name, destroy=lambda sid: adestroy_record(store, sid, clock()))
        self.mark_group_ended(name, ended)
        return len(ended)

    # -- the sync names refuse, naming the coroutine -------------------------

    def save(self) -> None:
        _use_coroutine("save")

    def reload(self) -> None:
        _use_coroutine("reload")

    def destroy(self) -> None:
        _use_coroutine("destroy")

    def regenerate(self, *, keep_data: bool = False) -> None:
        _use_coroutine("regenerate")

    def end_group(self, name: str) -> int:
        _use_coroutine("end_group")


def _read_only(what: str) -> NoReturn:
    raise TypeError(
        f"{what}: a websocket's session is read-only (nothing is saved at the end of a websocket, and a "
        "save from a long-lived socket would undo what HTTP requests wrote since); change the session "
        "in an HTTP request"
    )


class WebSocketSession(AsyncSession):
    """The session of a websocket's HTTP cookie: read it, ``areload()`` it, ``adestroy()`` it,
    ``aend_group()``; writing to it raises TypeError, and nothing is saved or touched when the
    socket ends."""

    def __setitem__(self, key: str, value: Any) -> None:
        _read_only(f"session[{key!r}] = ...")

    def __delitem__(self, key: str) -> None:
        _read_only(f"del session[{key!r}]")

    def join_group(self, name: str) -> None:
        _read_only(f"session.join_group({name!r})")

    def leave_group(self, name: str) -> None:
        _read_only(f"session.leave_group({name!r})")

    async def asave(self) -> None:
        _read_only("session.asave()")

    async def aregenerate(self, *, keep_data: bool = False) -> None:
        _read_only("session.aregenerate()")
