"""The storekit store contract, as typing protocols.

A store is any object with these methods; it needs no base class and no
import of storekit. The docstrings are the specification: each names the
clause IDs that the conformance suite (``storekit.conformance``) checks, and
``docs/contract.md`` explains each clause and where it comes from.

Terms:

* a **sid** is a non-empty ``str``;
* a **session** is a ``dict`` that is a JSON object; a store keeps its JSON
  value, so ``get`` returns what ``json.loads(json.dumps(session))`` would;
* a session's **expiry** is ``session["cookie"]["expires"]``, an RFC 3339
  string with an offset as express-session writes it. Without one, the
  session lives for the store's default TTL.

The methods mirror connect/express-session's Store: ``get``, ``set`` and
``destroy`` are required; ``touch`` is recommended; ``length``, ``clear`` and
``all`` are optional. Version 2 adds the optional ``replace``, a write that
lands only on a live session, which is what keeps a logout final under a
request still in flight, and the optional ``renew``, a read that renews the
expiry in the same step, so that a request that changes nothing costs one
round trip. :class:`AsyncStore` is the same contract with
coroutine methods.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal, Protocol, runtime_checkable

from storekit.errors import cut

__all__ = [
    "REQUIRED",
    "AsyncStore",
    "Session",
    "Store",
    "StoreKind",
    "SupportsAll",
    "SupportsAsyncAll",
    "SupportsAsyncClear",
    "SupportsAsyncLength",
    "SupportsAsyncRenew",
    "SupportsAsyncReplace",
    "SupportsAsyncTouch",
    "SupportsClear",
    "SupportsLength",
    "SupportsRenew",
    "SupportsReplace",
    "SupportsTouch",
    "check_store",
    "store_kind",
]

Session = dict[str, Any]
"""A session: a JSON object, with its expiry in ``session["cookie"]["expires"]``."""


@runtime_checkable
class Store(Protocol):
    """The required part of the contract.

    A sid that is not a non-empty ``str`` makes every method raise
    :class:`~storekit.InvalidSessionId` (sid.1). Sids are opaque and
    case-sensitive: distinct sids never share a session (sid.2); a store
    either keeps any sid exactly or rejects it with InvalidSessionId, and no
    sid can reach outside the store's own namespace (sid.3).
    """

    def get(self, sid: str) -> Session | None:
        """Return the session stored under ``sid``, or ``None``.

        * get.1: an unknown sid gives ``None`` (not ``{}``, not an error) and
          creates nothing.
        * get.2: the result equals the JSON round trip of the session last set.
        * get.3: every call returns a new object; mutating it, or mutating the
          dict passed to ``set`` after ``set`` returned, changes nothing stored.
        * ttl.1/ttl.2: a session is returned until its ``cookie.expires``
          (give or take the store's resolution) and ``None`` after it.
        """
        ...

    def set(self, sid: str, session: Session) -> None:
        """Store ``session`` under ``sid``, replacing whatever was there.

        * set.1: an upsert that replaces the whole session; it never merges.
        * set.2: a session that is not a JSON object (non-dict, a non-``str``
          key at any depth, a set, bytes, datetime, Decimal, NaN or infinity)
          raises :class:`~storekit.InvalidSessionData`, and what was stored
          under ``sid`` before is unchanged.
        * set.3: values round-trip exactly: nesting 64 deep, any Unicode
          (astral characters and NUL), 64-bit ints, floats to the last bit,
          bools, ``None``, empty containers.
        * set.4: sessions up to 1 MiB of encoded JSON are kept; larger ones
          raise InvalidSessionData and are never truncated.
        * ttl.3: a ``cookie.expires`` at or before now stores nothing and
          removes any session under ``sid``, without error.
        * ttl.4: a later ``set`` replaces the expiry, longer or shorter.
        * ttl.5: a session with no expiry lives for the store's default TTL.
        * ttl.6: a ``cookie.expires`` that is not an RFC 3339 string with an
          offset raises InvalidSessionData and leaves the stored session as it was.
        """
        ...

    def destroy(self, sid: str) -> None:
        """Remove the session under ``sid``.

        * destroy.1: afterwards ``get(sid)`` returns ``None``.
        * destroy.2: destroying an unknown sid does nothing and raises nothing.
        * destroy.3: only that sid is removed.
        """
        ...


@runtime_checkable
class SupportsTouch(Protocol):
    """The recommended ``touch``: renew a session's expiry without rewriting it."""

    def touch(self, sid: str, session: Session) -> None:
        """Set the expiry of the session under ``sid`` from ``session["cookie"]["expires"]``.

        * touch.1: the stored data (every key but ``"cookie"``) stays as it was.
        * touch.2: an unknown, destroyed or expired sid is left absent; touch
          creates nothing.
        * touch.3: an ``expires`` at or before now removes the session.
        """
        ...


@runtime_checkable
class SupportsLength(Protocol):
    """The optional ``length``."""

    def length(self) -> int:
        """length.1: the number of live sessions; expired ones are not counted."""
        ...


@runtime_checkable
class SupportsClear(Protocol):
    """The optional ``clear``."""

    def clear(self) -> None:
        """Remove every session in this store's namespace.

        * clear.1: afterwards every ``get`` returns ``None`` and ``length()`` is 0.
        * clear.2: clearing an empty store does nothing and raises nothing.
        * clear.3: sessions in another namespace (another prefix, another
          collection) are untouched.
        """
        ...


@runtime_checkable
class SupportsAll(Protocol):
    """The optional ``all``."""

    def all(self) -> dict[str, Session]:
        """all.1: a new dict of every live sid to its session, and nothing else."""
        ...


@runtime_checkable
class SupportsReplace(Protocol):
    """The optional ``replace`` (contract version 2): a write only while the session is live."""

    def replace(self, sid: str, session: Session) -> bool:
        """Store ``session`` under ``sid`` only if a live session is stored there, in one atomic step.

        * replace.1: on a live session it does what ``set`` does (the whole
          session replaced, never merged) and returns ``True``; on an unknown,
          destroyed or expired sid it stores nothing and returns ``False``.
        * replace.2: a session ``set`` would refuse raises
          :class:`~storekit.InvalidSessionData` (so does a malformed
          ``cookie.expires``), and what was stored is unchanged.
        * replace.3: the expiry is the new session's, as ``set`` gives it; an
          ``expires`` at or before now removes the live session (and returns
          ``True``).
        * replace.4: from 8 threads (or 64 tasks) beside ``set``, ``get`` and
          ``destroy`` on the same sids, the history is linearizable: no
          ``replace`` lands on a session a ``destroy`` removed before it.
        * replace.5: the same from 4 processes, for a shared store.
        """
        ...


@runtime_checkable
class SupportsRenew(Protocol):
    """The optional ``renew`` (contract version 2): ``get`` and ``touch`` in one step."""

    def renew(self, sid: str, session: Session) -> Session | None:
        """Return the session as ``get`` would, and do what ``touch(sid, session)`` does.

        * renew.1: on a live session it returns the session as stored before
          the renew (its data and its ``"cookie"``), and renews the expiry from
          ``session["cookie"]["expires"]`` (the default TTL without one), as
          touch.1 does; only the ``"cookie"`` of ``session`` is used.
        * renew.2: on an unknown, destroyed or expired sid it returns ``None``
          and creates nothing.
        * renew.3: an ``expires`` at or before now removes the session and
          returns ``None``; a malformed one raises
          :class:`~storekit.InvalidSessionData` and changes nothing.
        """
        ...


@runtime_checkable
class AsyncStore(Protocol):
    """:class:`Store` for asyncio: the same clauses, with coroutine methods."""

    async def get(self, sid: str) -> Session | None:
        """See :meth:`Store.get`."""
        ...

    async def set(self, sid: str, session: Session) -> None:
        """See :meth:`Store.set`."""
        ...

    async def destroy(self, sid: str) -> None:
        """See :meth:`Store.destroy`."""
        ...


@runtime_checkable
class SupportsAsyncTouch(Protocol):
    """:class:`SupportsTouch` for asyncio."""

    async def touch(self, sid: str, session: Session) -> None:
        """See :meth:`SupportsTouch.touch`."""
        ...


@runtime_checkable
class SupportsAsyncLength(Protocol):
    """:class:`SupportsLength` for asyncio."""

    async def length(self) -> int:
        """See :meth:`SupportsLength.length`."""
        ...


@runtime_checkable
class SupportsAsyncClear(Protocol):
    """:class:`SupportsClear` for asyncio."""

    async def clear(self) -> None:
        """See :meth:`SupportsClear.clear`."""
        ...


@runtime_checkable
class SupportsAsyncAll(Protocol):
    """:class:`SupportsAll` for asyncio."""

    async def all(self) -> dict[str, Session]:
        """See :meth:`SupportsAll.all`."""
        ...


@runtime_checkable
class SupportsAsyncReplace(Protocol):
    """:class:`SupportsReplace` for asyncio."""

    async def replace(self, sid: str, session: Session) -> bool:
        """See :meth:`SupportsReplace.replace`."""
        ...


@runtime_checkable
class SupportsAsyncRenew(Protocol):
    """:class:`SupportsRenew` for asyncio."""

    async def renew(self, sid: str, session: Session) -> Session | None:
        """See :meth:`SupportsRenew.renew`."""
        ...


REQUIRED = ("get", "set", "destroy")
"""The methods every store has."""

StoreKind = Literal["sync", "async"]


def store_kind(obj: object) -> StoreKind:
    """``"sync"`` or ``"async"``: which contract ``obj`` offers; TypeError saying what is wrong if neither.

    The one "is this a store" check. A class (not an instance), an object
    that lacks one of get, set and destroy, and one whose required methods are
    partly coroutine functions are all refused, each with its own message.
    """
    if isinstance(obj, type):
        raise TypeError(f"{obj.__qualname__} is a class, not a store; pass an instance, {obj.__qualname__}()")
    missing = [name for name in REQUIRED if not callable(getattr(obj, name, None))]
    if missing:
        raise TypeError(
            f"{cut(obj)} is not a store: it has no {', '.join(f'{name}()' for name in missing)}; "
            "a store needs get, set and destroy"
        )
    coroutines = [name for name in REQUIRED if inspect.iscoroutinefunction(getattr(obj, name))]
    if not coroutines:
        return "sync"
    if len(coroutines) == len(REQUIRED):
        return "async"
    plain = [name for name in REQUIRED if name not in coroutines]
    raise TypeError(
        f"{cut(obj)} mixes the two contracts: {_listed(coroutines)} {_be(coroutines)} "
        f"{_a(coroutines, 'coroutine function')} but {_listed(plain)} {_be(plain)} not; a store is sync "
        "throughout or async throughout"
    )


def _listed(names: list[str]) -> str:
    shown = [f"{name}()" for name in names]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"


def _be(names: list[str]) -> str:
    return "is" if len(names) == 1 else "are"


def _a(names: list[str], noun: str) -> str:
    return f"a {noun}" if len(names) == 1 else f"{noun}s"


def check_store(obj: object, user: str, *, kind: StoreKind) -> Any:
    """``obj`` if it is a store of ``kind``; TypeError naming ``user`` (what needs the store) otherwise.

    An async store where a sync one is needed (or the reverse) is refused
    with the name of the twin to use instead.
    """
    found = store_kind(obj)
    if found == kind:
        return obj
    if kind == "sync":
        raise TypeError(
            f"{cut(obj)} is an async store; {user} needs a sync store such as "
            "storekit.reference.MemoryStore, ClusterStore or RedisStore (an async store is for "
            "async frameworks)"
        )
    raise TypeError(
        f"{cut(obj)} is a sync store; {user} needs an async store such as "
        "storekit.reference.AsyncMemoryStore, AsyncClusterStore or AsyncRedisStore"
    )
