"""The two writes that keep a logout final, for every shell, sync and awaited.

:func:`write_live` sets a loaded session only while it is still stored;
:func:`destroy_record` destroys one so that a write in flight cannot bring it
back. With the store's ``replace(sid, session) -> bool`` (set only while
live, atomic in the store) there is no window; without it, the docstrings
state the exact window that remains.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from storekit import lifecycle
from storekit.contract import AsyncStore, Store

__all__ = ["adestroy_record", "awrite_live", "destroy_record", "write_live"]

T = TypeVar("T")


def write_live(store: Store, sid: str, record: dict[str, Any]) -> bool:
    """Set ``record`` under ``sid`` only while a session is stored there; False if it is gone.

    With the store's ``replace(sid, session) -> bool`` (set only while live,
    atomic in the store) that is all. Without it: ``get`` first (a session
    destroyed before it is left gone), then ``set``, then a look for the marker
    :func:`destroy_record` leaves: a destroy that landed between the ``get`` and
    the ``set`` is undone at once by destroying again. So a session destroyed
    through storekit stays destroyed; from the ``set`` to that second destroy
    (two store calls) it is readable again. A destroy from elsewhere (another
    program's ``destroy``, leaving no marker) landing between the ``get`` and
    the ``set`` is undone: that window, one store call wide, remains.
    """
    replace = getattr(store, "replace", None)
    if callable(replace):
        return bool(replace(sid, record))
    if store.get(sid) is None:
        return False
    store.set(sid, record)
    marker = lifecycle.ended_sid(sid)
    if marker is not None and store.get(marker) is not None:
        store.destroy(sid)  # destroyed while we wrote: keep it destroyed
        return False
    return True


def destroy_record(store: Store, sid: str, now: float, *, marker: bool = True) -> None:
    """Destroy the session under ``sid`` so that no write in flight brings it back.

    A store with ``replace`` needs nothing more (:func:`write_live` replaces
    only a live session). Without it, a marker under ``storekit.ended:<sid>``
    (living :data:`storekit.lifecycle.ENDED_TTL`) is set first, which a
    :func:`write_live` that raced the destroy finds. ``marker`` False skips it,
    for a session no other request can know (new in this request).
    """
    marker_sid = lifecycle.ended_sid(sid) if marker and not lifecycle.can_replace(store) else None
    if marker_sid is not None:
        store.set(marker_sid, lifecycle.ended_record(now))
    store.destroy(sid)


async def awrite_live(store: AsyncStore, sid: str, record: dict[str, Any]) -> bool:
    """The awaited twin of :func:`write_live` (the same calls, the same window).

    Without ``replace``, its steps run to their end even when the awaiting task
    is cancelled (a client that hangs up during the save, a server's timeout):
    stopped between the ``set`` and the look for the marker, it would leave a
    session that was logged out meanwhile stored again. The cancellation is
    raised once they are done."""
    replace = getattr(store, "replace", None)
    if callable(replace):
        return bool(await replace(sid, record))
    return await _to_the_end(_write_then_check(store, sid, record))


async def _write_then_check(store: AsyncStore, sid: str, record: dict[str, Any]) -> bool:
    if await store.get(sid) is None:
        return False
    await store.set(sid, record)
    marker = lifecycle.ended_sid(sid)
    if marker is not None and await store.get(marker) is not None:
        await store.destroy(sid)  # destroyed while we wrote: keep it destroyed
        return False
    return True


async def _to_the_end(steps: Coroutine[Any, Any, T]) -> T:
    """Await ``steps`` to their end, then raise a cancellation that came meanwhile."""
    task = asyncio.ensure_future(steps)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():  # the steps themselves were cancelled, from outside
                raise
            cancelled = True  # asked again at the next turn of a cancel scope: keep waiting
            continue
        if cancelled:
            raise asyncio.CancelledError
        return result


async def adestroy_record(store: AsyncStore, sid: str, now: float, *, marker: bool = True) -> None:
    """The awaited twin of :func:`destroy_record`."""
    marker_sid = lifecycle.ended_sid(sid) if marker and not lifecycle.can_replace(store) else None
    if marker_sid is not None:
        await store.set(marker_sid, lifecycle.ended_record(now))
    await store.destroy(sid)
