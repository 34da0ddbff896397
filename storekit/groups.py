"""Session groups ("log out everywhere"), built on the plain store contract.

A group is a name, such as ``"user:42"``. Its members are kept in an index
record in the same store, under the reserved sid ``storekit.group:<name>``:
``{"members": [sid, ...], "generation": token, "cookie": {"expires": ...}}``
(the cookie written by :func:`storekit.codec.cookie_json`, so that the store
expires the index). Any conforming store can hold it, and ending a group is:
read the index, write an empty one of a new generation over it, destroy every
member.

The ``generation`` names one era of a group, from its first join to its
``end_group``; each session records the generation of every index it joined.
An index created where there is none gets :func:`first_generation`: the same
for every join within one span of ``group_ttl`` seconds, so two sessions
creating it at the same instant join one generation, and the one whose
membership the later write lost finds itself missing (same generation, not
listed) when it is next loaded, and joins again. It is never the generation of
an earlier index of the group: an index lasts at least ``group_ttl`` from its
creation (on a store that does not evict it sooner), so the one it replaces was
created in an earlier span. ``end_group``
does not remove the index: it writes over it an empty one of a fresh random
generation with the ended index's expiry (:func:`ended`), and joins after it
join that generation. A session whose group has since been ended finds an
index of another generation, or none, and is ended when it is next loaded
(:func:`membership`), so no session outlives an ``end_group`` of a group it
had joined, even one whose membership the index lost, but for the window
below. A session joins again only into the generation it joined
(:func:`add_member` with ``expected``). The index is a read-modify-write on a
store without transactions: a join reads the index again just before it writes
it, and never writes back a generation that changed since its first read; an
``end_group`` that replaces the index between that second read and the write
(one store call wide) is undone. Destroyed members are never removed from an
index (a sid is never reused, so destroying it again is harmless); an index is
pruned of members whose sessions are gone when it grows past :data:`PRUNE_AT`.

The index arithmetic (:func:`members`, :func:`joined`, :func:`left`) is pure;
:func:`add_member`, :func:`remove_member` and :func:`end_group` are its sync
I/O, and an async shell awaits the same steps.

Each session remembers, under the reserved key ``storekit.groups``, until
when each of its groups' index is known to last and its generation
(``{name: [until, generation]}``; a bare ``until`` from an older storekit has no
generation); the index is written again only when that time comes near.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, Literal

from storekit.codec import check_sid, cookie_json, parse_expires
from storekit.contract import Store
from storekit.errors import InvalidSessionData, cut

__all__ = [
    "GROUPS_KEY",
    "GROUP_PREFIX",
    "PRUNE_AT",
    "Membership",
    "add_member",
    "check_group_name",
    "end_group",
    "ended",
    "first_generation",
    "generation_of",
    "group_sid",
    "groups_due",
    "join_base",
    "joined",
    "left",
    "members",
    "membership",
    "new_generation",
    "remove_member",
]

Membership = Literal["member", "lost", "ended"]

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


def generation_of(record: dict[str, Any] | None) -> str | None:
    """The generation token of an index record, or None (no record, or one written before generations)."""
    found = None if record is None else record.get("generation")
    return found if isinstance(found, str) else None


def new_generation() -> str:
    """A fresh random generation token, for the index that ``end_group`` leaves."""
    return secrets.token_urlsafe(9)


def first_generation(now: float, ttl: float) -> str:
    """The generation of an index created at ``now`` where there is none, for indexes that last at
    least ``ttl`` seconds from their creation: the same for the whole span of ``ttl`` that holds
    ``now``, so concurrent first joins agree, and never that of an index created in another span."""
    return f"t{ttl:g}.{int(now // ttl)}"


def membership(record: dict[str, Any] | None, name: str, sid: str, generation: str | None) -> Membership:
    """Where session ``sid``, which joined group ``name``'s index of ``generation``, stands. Pure.

    ``"ended"``: the index is gone or is another generation (the group was
    ended since the join); ``"lost"``: the same index does not list the sid (a
    concurrent join wrote over it), so the session must join again;
    ``"member"``: listed. A session that knows no generation (stored by an
    older storekit) is ``"lost"`` when not listed, never ``"ended"``.
    """
    listed = sid in members(record, name)
    if generation is not None and (record is None or generation_of(record) != generation):
        return "ended"
    return "member" if listed else "lost"


def _index_until(record: dict[str, Any] | None) -> float:
    if record is None:
        return 0.0
    cookie = record.get("cookie")
    expires = cookie.get("expires") if isinstance(cookie, dict) else None
    return 0.0 if expires is None else parse_expires(expires)


def joined(
    record: dict[str, Any] | None, alive: list[str], sid: str, *, until: float, generation: str
) -> tuple[dict[str, Any], float, str]:
    """The index record once ``sid`` joined, until when it lasts (at least ``until``), and its
    generation (the record's own, or ``generation`` for an index created now).

    Pure: ``alive`` is the members to keep, already pruned by the caller when
    there are more than :data:`PRUNE_AT` of them.
    """
    kept = [*alive, sid] if sid not in alive else list(alive)
    until = max(until, _index_until(record))
    generation = generation_of(record) or generation
    written = {"members": kept, "generation": generation, "cookie": cookie_json(max_age=None, expires=until)}
    return written, until, generation


def left(record: dict[str, Any] | None, name: str, sid: str) -> dict[str, Any] | None:
    """The index record once ``sid`` left, or None when there is nothing to write. Pure."""
    found = members(record, name)
    if record is None or sid not in found:
        return None
    found.remove(sid)
    return {**record, "members": found}


def join_base(
    name: str,
    first: dict[str, Any] | None,
    alive: list[str],
    current: dict[str, Any] | None,
    *,
    expected: str | None,
) -> tuple[dict[str, Any] | None, list[str]] | None:
    """The index record, and the members to keep, that a join of group ``name`` writes over;
    None when it must write nothing and the session must end instead. Pure.

    ``first`` is the index the join read (``alive``: its members, pruned),
    ``current`` the same index read again just before the write, ``expected``
    the generation the session recorded when it joined (None for a brand-new
    join, such as a login). A rejoin finds the group ended since the join when
    ``first`` is gone or of another generation. A write never restores a
    generation that is gone: if the index vanished or changed generation
    between the two reads, a rejoin is refused, and a brand-new join joins what
    is there now (or creates an index, if nothing is).
    """
    if expected is not None and (first is None or generation_of(first) != expected):
        return None
    if (first is None) == (current is None) and generation_of(first) == generation_of(current):
        return first, alive
    if expected is not None:
        return None
    return current, members(current, name)


def add_member(
    store: Store, name: str, sid: str, *, until: float, expected: str | None = None, fresh: str | None = None
) -> tuple[float, str] | None:
    """Put ``sid`` in group ``name``, keeping the index until at least ``until``.

    An index created here is of generation ``fresh``: the middleware's
    :func:`first_generation`, a random one by default.

    Returns when the index now expires, and its generation; or None, writing
    nothing, for a session that had joined the index of generation ``expected``
    when that index is gone or of another generation (the group was ended since
    the join: the caller ends the session). See :func:`join_base`: the index is read
    again just before the ``set``, so an ``end_group`` that lands between the
    first read (and the pruning reads) and that second read is not undone. One
    landing between the second read and the ``set`` (one store call wide)
    writes the ended index back.
    """
    index = group_sid(name)
    record = store.get(index)
    if expected is not None and (record is None or generation_of(record) != expected):
        return None  # ended since the join: no need to read again
    alive = members(record, name)
    if len(alive) > PRUNE_AT:
        alive = [member for member in alive if store.get(member) is not None]
    found = join_base(name, record, alive, store.get(index), expected=expected)
    if found is None:
        return None
    written, until, generation = joined(*found, sid, until=until, generation=fresh or new_generation())
    store.set(index, written)
    return until, generation


def remove_member(store: Store, name: str, sid: str) -> None:
    """Take ``sid`` out of group ``name``; nothing happens if it was not in it."""
    index = group_sid(name)
    written = left(store.get(index), name, sid)
    if written is not None:
        store.set(index, written)


def ended(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The index that ``end_group`` writes over the index ``record`` (one :func:`members` has
    read): no members, a fresh generation, the same expiry; None when there is no index to end.
    Pure but for the random token."""
    return None if record is None else {**record, "members": [], "generation": new_generation()}


def end_group(store: Store, name: str, *, destroy: Callable[[str], None] | None = None) -> list[str]:
    """Destroy every session of group ``name`` and end the group's generation.

    Returns the sids that were members. The index goes first (replaced by
    :func:`ended`), so a session that joins while this runs joins the new
    generation instead of being lost; a member that joined the old one is
    ended when next loaded (:func:`membership`). Each member goes through
    ``destroy`` (the session core's, which a slow request cannot undo),
    ``store.destroy`` by default.
    """
    index = group_sid(name)
    record = store.get(index)
    found = members(record, name)
    written = ended(record)
    if written is not None:
        store.set(index, written)
    for member in found:
        if not member.startswith(GROUP_PREFIX):
            (destroy or store.destroy)(member)
    return found
