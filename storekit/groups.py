"""Session groups ("log out everywhere"), built on the plain store contract.

A group is a name, such as ``"user:42"``. Its members are kept in an index
record in the same store, under the reserved sid ``storekit.group:<name>``:
``{"members": [sid, ...], "cookie": {"expires": ...}}`` (the cookie written by
:func:`storekit.codec.cookie_json`, so that the store expires the index). Any conforming store
can hold it, and ending a group is: read the index, destroy it, destroy every
member.

The index is a read-modify-write on a store without transactions, so it has
races, which the docs state: two sessions joining one group at the same
instant can lose one of the two memberships until that session's next
refresh, and a session joining while the group is being ended may outlive
the end. Destroyed members are never removed from an index (a sid is never
reused, so destroying it again is harmless); an index is pruned of members
whose sessions are gone when it grows past :data:`PRUNE_AT`.

The index arithmetic (:func:`members`, :func:`joined`, :func:`left`) is pure;
:func:`add_member`, :func:`remove_member` and :func:`end_group` are its sync
I/O, and an async shell awaits the same steps.

Each session remembers, under the reserved key ``storekit.groups``, until
when each of its groups' index is known to last; the index is written again
only when that time comes near, not on every request.
"""

from __future__ import annotations

from typing import Any

from storekit.codec import check_sid, cookie_json, parse_expires
from storekit.contract import Store
from storekit.errors import InvalidSessionData, cut

__all__ = [
    "GROUPS_KEY",
    "GROUP_PREFIX",
    "PRUNE_AT",
    "add_member",
    "check_group_name",
    "end_group",
    "group_sid",
    "groups_due",
    "joined",
    "left",
    "members",
    "remove_member",
]

GROUP_PREFIX = "storekit.group:"
"""The sid prefix of group index records; a cookie naming such a sid is refused."""

GROUPS_KEY = "storekit.groups"
"""The reserved key under which a stored session lists its groups."""

PRUNE_AT = 64
"""An index with more members than this is pruned of sessions that are gone when joined."""


def check_group_name(name: object) -> str:
    """Return ``name`` if it can name a group, else raise ValueError."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a group name must be a non-empty str such as 'user:42', got {cut(name)}")
    check_sid(GROUP_PREFIX + name)
    return name


def group_sid(name: str) -> str:
    """The sid of the index record of group ``name``."""
    return GROUP_PREFIX + check_group_name(name)


def groups_due(groups: dict[str, float], *, expires: float | None, now: float, ttl: float) -> list[str]:
    """The groups whose index must be written again before this session is saved.

    An index must outlive its members: it is due when it would end before
    ``ttl / 2`` from now or before the session itself (``expires``).
    """
    needed = max(now + ttl / 2, expires or 0.0)
    return sorted(name for name, until in groups.items() if until < needed)


def members(record: dict[str, Any] | None, name: str) -> list[str]:
    """The sids an index record of group ``name`` lists (none for no record); InvalidSessionData
    for a record that is not an index."""
    if record is None:
        return []
    found = record.get("members")
    if not isinstance(found, list) or not all(isinstance(sid, str) for sid in found):
        raise InvalidSessionData(
            f"the index of group {name!r} (sid {group_sid(name)!r}) holds {cut(record)}, not "
            "{'members': [sid, ...]}; another program wrote under storekit's reserved prefix"
        )
    return list(found)


def _index_until(record: dict[str, Any] | None) -> float:
    if record is None:
        return 0.0
    cookie = record.get("cookie")
    expires = cookie.get("expires") if isinstance(cookie, dict) else None
    return 0.0 if expires is None else parse_expires(expires)


def joined(
    record: dict[str, Any] | None, alive: list[str], sid: str, *, until: float
) -> tuple[dict[str, Any], float]:
    """The index record once ``sid`` joined, and until when it lasts (at least ``until``).

    Pure: ``alive`` is the members to keep, already pruned by the caller when
    there are more than :data:`PRUNE_AT` of them.
    """
    kept = [*alive, sid] if sid not in alive else list(alive)
    until = max(until, _index_until(record))
    return {"members": kept, "cookie": cookie_json(max_age=None, expires=until)}, until


def left(record: dict[str, Any] | None, name: str, sid: str) -> dict[str, Any] | None:
    """The index record once ``sid`` left, or None when there is nothing to write. Pure."""
    found = members(record, name)
    if record is None or sid not in found:
        return None
    found.remove(sid)
    return {**record, "members": found}


def add_member(store: Store, name: str, sid: str, *, until: float) -> float:
    """Put ``sid`` in group ``name``, keeping the index until at least ``until``.

    Returns when the index now expires.
    """
    index = group_sid(name)
    record = store.get(index)
    alive = members(record, name)
    if len(alive) > PRUNE_AT:
        alive = [member for member in alive if store.get(member) is not None]
    written, until = joined(record, alive, sid, until=until)
    store.set(index, written)
    return until


def remove_member(store: Store, name: str, sid: str) -> None:
    """Take ``sid`` out of group ``name``; nothing happens if it was not in it."""
    index = group_sid(name)
    written = left(store.get(index), name, sid)
    if written is not None:
        store.set(index, written)


def end_group(store: Store, name: str) -> list[str]:
    """Destroy every session of group ``name`` and the group itself.

    Returns the sids that were members. The index goes first, so a session
    that joins while this runs starts a new group instead of being lost.
    """
    index = group_sid(name)
    ended = members(store.get(index), name)
    store.destroy(index)
    for member in ended:
        if not member.startswith(GROUP_PREFIX):
            store.destroy(member)
    return ended
