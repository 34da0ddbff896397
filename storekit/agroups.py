"""Session groups over an async store: the awaited twins of :mod:`storekit.groups`' sync I/O.

The index arithmetic is :mod:`storekit.groups`' own (``members``, ``joined``,
``left``, ``membership``, ``group_sid``); each function here makes the store
calls of its sync namesake, in the same order, with ``await``. The races are
the same and are stated there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from storekit.contract import AsyncStore
from storekit.groups import (
    GROUP_PREFIX,
    PRUNE_AT,
    ended,
    generation_of,
    group_sid,
    join_base,
    joined,
    left,
    members,
    new_generation,
)

__all__ = ["add_member", "end_group", "remove_member"]


async def add_member(
    store: AsyncStore,
    name: str,
    sid: str,
    *,
    until: float,
    expected: str | None = None,
    fresh: str | None = None,
) -> tuple[float, str] | None:
    """See :func:`storekit.groups.add_member`: the same calls, awaited, and the same window."""
    index = group_sid(name)
    record = await store.get(index)
    if expected is not None and (record is None or generation_of(record) != expected):
        return None
    alive = members(record, name)
    if len(alive) > PRUNE_AT:
        alive = [member for member in alive if await store.get(member) is not None]
    found = join_base(name, record, alive, await store.get(index), expected=expected)
    if found is None:
        return None
    written, until, generation = joined(*found, sid, until=until, generation=fresh or new_generation())
    await store.set(index, written)
    return until, generation


async def remove_member(store: AsyncStore, name: str, sid: str) -> None:
    """See :func:`storekit.groups.remove_member`."""
    index = group_sid(name)
    written = left(await store.get(index), name, sid)
    if written is not None:
        await store.set(index, written)


async def end_group(
    store: AsyncStore, name: str, *, destroy: Callable[[str], Awaitable[None]] | None = None
) -> list[str]:
    """See :func:`storekit.groups.end_group`: the index goes first, then every member."""
    index = group_sid(name)
    record = await store.get(index)
    found = members(record, name)
    written = ended(record)
    if written is not None:
        await store.set(index, written)
    for member in found:
        if not member.startswith(GROUP_PREFIX):
            await (destroy or store.destroy)(member)
    return found
