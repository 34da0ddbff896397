"""MemoryStore: sessions in this process's memory, for one-process apps and tests.

Sessions are held as encoded JSON bytes, so every ``get`` hands out a fresh
copy and nothing a caller mutates can reach the store. Expiry is checked on
every read; a heap of expiry times is swept a little on every write, so
expired sessions do not pile up even when nobody reads them again.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable

from storekit.codec import (
    DEFAULT_MAX_SESSION_BYTES,
    check_seconds,
    check_sid,
    decode_session,
    encode_session,
    session_expiry,
)
from storekit.contract import Session

__all__ = ["AsyncMemoryStore", "MemoryStore"]

_Entry = tuple[bytes, "float | None"]  # encoded session, expiry as POSIX seconds


class _Shelf:
    """The storage behind one MemoryStore and its namespace views."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spaces: dict[str, dict[str, _Entry]] = {}
        self.expiries: list[tuple[float, str, str]] = []  # heap of (expiry, namespace, sid)

    def note_expiry(self, when: float, namespace: str, sid: str) -> None:
        heapq.heappush(self.expiries, (when, namespace, sid))

    def sweep(self, now: float) -> None:
        """Drop expired sessions; call with the lock held. Amortized O(log n)
        per write: each heap entry is pushed once and popped once."""
        heap = self.expiries
        while heap and heap[0][0] <= now:
            when, namespace, sid = heapq.heappop(heap)
            space = self.spaces.get(namespace)
            entry = space.get(sid) if space is not None else None
            if space is not None and entry is not None and entry[1] == when:
                del space[sid]
        live = sum(len(space) for space in self.spaces.values())
        if len(heap) > 2 * live + 1024:  # overwritten expiries left stale entries behind
            self.expiries = [
                (entry[1], namespace, sid)
                for namespace, space in self.spaces.items()
                for sid, entry in space.items()
                if entry[1] is not None
            ]
            heapq.heapify(self.expiries)


class MemoryStore:
    """A thread-safe in-process store that passes every clause of the contract
    that a process-local store can.

    ``default_ttl`` (seconds) is the life of a session without
    ``cookie.expires``; ``None`` keeps it until destroyed. ``clock`` returns
    POSIX seconds and can be replaced in tests. :meth:`namespace` gives a view
    on the same memory whose ``clear``, ``length`` and ``all`` see only its own
    sessions.
    """

    def __init__(
        self,
        *,
        default_ttl: float | None = None,
        max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES,
        clock: Callable[[], float] = time.time,
        namespace: str = "",
        _shelf: _Shelf | None = None,
    ) -> None:
        self.default_ttl = check_seconds("default_ttl", default_ttl, none="no expiry")
        self.max_session_bytes = max_session_bytes
        self.clock = clock
        self.name = namespace
        self._shelf = _shelf or _Shelf()
        with self._shelf.lock:
            self._space = self._shelf.spaces.setdefault(namespace, {})

    def namespace(self, name: str) -> MemoryStore:
        """A store over the same memory whose sessions are kept apart from this one's."""
        return MemoryStore(
            default_ttl=self.default_ttl,
            max_session_bytes=self.max_session_bytes,
            clock=self.clock,
            namespace=name,
            _shelf=self._shelf,
        )

    def _expiry(self, session: Session, now: float) -> float | None:
        expires = session_expiry(session)
        if expires is None and self.default_ttl is not None:
            return now + self.default_ttl
        return expires

    def _live(self, sid: str, now: float) -> _Entry | None:
        """The entry of a live session (call with the lock held); an expired one is dropped."""
        entry = self._space.get(sid)
        if entry is not None and entry[1] is not None and entry[1] <= now:
            del self._space[sid]
            return None
        return entry

    def _put(self, sid: str, data: bytes, expires: float | None, now: float) -> None:
        """Store ``data`` until ``expires``, or remove ``sid`` if that is not after ``now``
        (call with the lock held)."""
        if expires is not None and expires <= now:
            self._space.pop(sid, None)
        else:
            self._space[sid] = (data, expires)
            if expires is not None:
                self._shelf.note_expiry(expires, self.name, sid)
        self._shelf.sweep(now)

    def get(self, sid: str) -> Session | None:
        check_sid(sid)
        now = self.clock()
        with self._shelf.lock:
            entry = self._live(sid, now)
        return None if entry is None else decode_session(entry[0])

    def set(self, sid: str, session: Session) -> None:
        check_sid(sid)
        data = encode_session(session, max_bytes=self.max_session_bytes)
        now = self.clock()
        expires = self._expiry(session, now)
        with self._shelf.lock:
            self._put(sid, data, expires, now)

    def replace(self, sid: str, session: Session) -> bool:
        """Set ``session`` only while a live session is stored under ``sid``; whether it was."""
        check_sid(sid)
        data = encode_session(session, max_bytes=self.max_session_bytes)
        now = self.clock()
        expires = self._expiry(session, now)
        with self._shelf.lock:
            if self._live(sid, now) is None:
                return False
            self._put(sid, data, expires, now)
        return True

    def destroy(self, sid: str) -> None:
        check_sid(sid)
        with self._shelf.lock:
            self._space.pop(sid, None)

    def touch(self, sid: str, session: Session) -> None:
        check_sid(sid)
        now = self.clock()
        expires = self._expiry(session, now)
        cookie = session.get("cookie")
        with self._shelf.lock:
            entry = self._live(sid, now)
            if entry is None:
                return
            if expires is not None and expires <= now:
                del self._space[sid]
                return
            stored = decode_session(entry[0])
            stored["cookie"] = cookie
            self._put(sid, encode_session(stored, max_bytes=self.max_session_bytes), expires, now)

    def renew(self, sid: str, session: Session) -> Session | None:
        """The session as get gives it, and its new expiry, under one hold of the lock. The
        stored bytes stay as they are (the cookie too, as Redis's GETEX leaves it), so a renew
        costs what a get costs."""
        check_sid(sid)
        now = self.clock()
        expires = self._expiry(session, now)
        with self._shelf.lock:
            entry = self._live(sid, now)
            if entry is None:
                return None
            self._put(sid, entry[0], expires, now)
        return None if expires is not None and expires <= now else decode_session(entry[0])

    def length(self) -> int:
        now = self.clock()
        with self._shelf.lock:
            return sum(1 for _, expires in self._space.values() if expires is None or expires > now)

    def clear(self) -> None:
        with self._shelf.lock:
            self._space.clear()

    def all(self) -> dict[str, Session]:
        now = self.clock()
        with self._shelf.lock:
            live = [
                (sid, data)
                for sid, (data, expires) in self._space.items()
                if expires is None or expires > now
            ]
        return {sid: decode_session(data) for sid, data in live}

    def __repr__(self) -> str:
        return f"MemoryStore(namespace={self.name!r}, default_ttl={self.default_ttl!r})"


class AsyncMemoryStore:
    """The asyncio twin of :class:`MemoryStore`, with the same arguments.

    Its methods never wait on I/O, so they complete without yielding to the
    event loop; they are coroutines so that async apps and the async contract
    can use them.
    """

    def __init__(
        self,
        *,
        default_ttl: float | None = None,
        max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES,
        clock: Callable[[], float] = time.time,
        namespace: str = "",
        sync: MemoryStore | None = None,
    ) -> None:
        self.sync = sync or MemoryStore(
            default_ttl=default_ttl,
            max_session_bytes=max_session_bytes,
            clock=clock,
            namespace=namespace,
        )

    def namespace(self, name: str) -> AsyncMemoryStore:
        """See :meth:`MemoryStore.namespace`."""
        return AsyncMemoryStore(sync=self.sync.namespace(name))

    async def get(self, sid: str) -> Session | None:
        return self.sync.get(sid)

    async def set(self, sid: str, session: Session) -> None:
        self.sync.set(sid, session)

    async def destroy(self, sid: str) -> None:
        self.sync.destroy(sid)

    async def replace(self, sid: str, session: Session) -> bool:
        return self.sync.replace(sid, session)

    async def touch(self, sid: str, session: Session) -> None:
        self.sync.touch(sid, session)

    async def renew(self, sid: str, session: Session) -> Session | None:
        return self.sync.renew(sid, session)

    async def length(self) -> int:
        return self.sync.length()

    async def clear(self) -> None:
        self.sync.clear()

    async def all(self) -> dict[str, Session]:
        return self.sync.all()

    def __repr__(self) -> str:
        return f"AsyncMemoryStore(namespace={self.sync.name!r})"
