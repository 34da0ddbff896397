"""The sessions a cluster server holds, with no I/O: the server's only state.

Entries are kept as compactly as Python allows, since a master may hold
millions: one ``dict`` per namespace maps the UTF-8 sid (``bytes``) to one
``bytes`` value, the wire's expiry (milliseconds, big-endian) followed by the
encoded JSON, exactly as it arrived in the set request (a touch renews it
without parsing it: ``wire.touched_value``). Comparing
``value[EXPIRY] <= now`` tells whether an entry has expired, with no per-entry
tuple or float. Expired entries are dropped when read, and swept in the
background through per-second buckets of sids (8 bytes of list slot per
entry), a little on every write and a little on every server tick, so that
dead sessions do not pile up. The semantics are MemoryStore's.

With persistence, ``log`` receives every change as its effect (``records``:
PUT of the value stored, DELETE of a session that was there, TOUCH applied
to a live session, CLEAR of a namespace that was there), in the order they
happen; expiries are not logged, since a replay drops what has expired. Each
change is logged before it is made: a ``log`` that raises :class:`Unlogged`
leaves the state as it was, so memory never holds what the log lacks.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

from storekit.reference.cluster.records import CLEAR, DELETE, PUT, TOUCH
from storekit.reference.cluster.wire import (
    EXPIRY,
    JSON,
    NEVER_BYTES,
    expiry_millis,
    json_length,
    millis_expiry,
    sid_problem,
    touched_value,
    value_problem,
)

__all__ = ["MAX_TOUCH_BYTES", "ClusterState", "Log", "Space", "Unlogged"]

Log = Callable[[int, bytes, bytes, bytes], None]
"""Where changes go: ``log(op, namespace, sid, value)`` with the ops of ``records``,
called before the change is made; it raises :class:`Unlogged` to refuse it."""


class Unlogged(Exception):
    """A change the log could not take, so the state did not make it; the message says why,
    for the client whose request is refused."""


class Space:
    """The entries of one namespace and the buckets that sweep them."""

    __slots__ = ("buckets", "entries", "order", "refs")

    def __init__(self) -> None:
        self.entries: dict[bytes, bytes] = {}
        self.buckets: dict[int, list[bytes]] = {}  # second -> sids expiring in it
        self.order: list[int] = []  # heap of the seconds in buckets
        self.refs = 0  # sids held by all buckets, stale ones included

    def note(self, sid: bytes, expiry: bytes) -> None:
        """Remember to look at ``sid`` once its expiry second is over."""
        second = expiry_millis(expiry) // 1000
        bucket = self.buckets.get(second)
        if bucket is None:
            self.buckets[second] = [sid]
            heapq.heappush(self.order, second)
        else:
            bucket.append(sid)
        self.refs += 1
        if self.refs > 2 * len(self.entries) + 1024:
            self.rebuild()

    def sweep(self, now_ms: int, now: bytes, budget: int) -> int:
        """Drop expired entries from buckets whose second is over, looking at
        no more than ``budget`` sids; return the budget left."""
        order, buckets, entries = self.order, self.buckets, self.entries
        limit, start = now_ms // 1000, budget
        while budget > 0 and order and order[0] < limit:
            sids = buckets[order[0]]
            while sids and budget > 0:
                sid = sids.pop()
                budget -= 1
                value = entries.get(sid)
                if value is not None and value[EXPIRY] <= now:
                    del entries[sid]
            if not sids:
                del buckets[heapq.heappop(order)]
        self.refs -= start - budget
        return budget

    def rebuild(self) -> None:
        """Forget stale bucket slots left behind by sessions set again."""
        self.buckets, self.order, self.refs = {}, [], 0
        for sid, value in self.entries.items():
            expiry = value[EXPIRY]
            if expiry != NEVER_BYTES:
                self.note(sid, expiry)


MAX_TOUCH_BYTES = 1 << 16
"""The most JSON a touch may carry (its ``{"cookie": ...}``)."""


class ClusterState:
    """Namespaces of sessions; every method runs on the server thread only.

    ``clock`` returns POSIX seconds and can be replaced in tests; ``log``, if
    set, receives every change (see the module's docstring).
    """

    def __init__(self, *, max_session_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self.max_session_bytes = max_session_bytes
        self.clock = clock
        self.spaces: dict[bytes, Space] = {}
        self.log: Log | None = None

    def _now(self) -> tuple[int, bytes]:
        now_ms = int(self.clock() * 1000)
        return now_ms, millis_expiry(now_ms)

    def get(self, namespace: bytes, sid: bytes) -> bytes | None:
        """The stored value (expiry + JSON) of a live session, or None."""
        space = self.spaces.get(namespace)
        if space is None:
            return None
        value = space.entries.get(sid)
        if value is None:
            return None
        if value[EXPIRY] <= millis_expiry(int(self.clock() * 1000)):
            del space.entries[sid]
            return None
        return value

    def set(self, namespace: bytes, sid: bytes, value: bytes) -> str | None:
        """Store ``value`` (expiry + JSON); an error message if it is refused."""
        problem = self._refused(sid, value)
        if problem is not None:
            return problem
        self._store(namespace, sid, value)
        return None

    def replace(self, namespace: bytes, sid: bytes, value: bytes) -> bool | str:
        """Store ``value`` only over a live session: whether there was one, or an error
        message if ``value`` is refused (checked first, so a refusal changes nothing)."""
        problem = self._refused(sid, value)
        if problem is not None:
            return problem
        if self.get(namespace, sid) is None:
            return False
        self._store(namespace, sid, value)
        return True

    def _refused(self, sid: bytes, value: bytes) -> str | None:
        if json_length(value) > self.max_session_bytes:
            return (
                f"the session is {json_length(value)} bytes of JSON; the cluster server keeps "
                f"at most {self.max_session_bytes} (raise max_session_bytes in setup())"
            )
        problem = sid_problem(sid) or value_problem(value)
        if problem is not None:
            return f"{problem}; the cluster server stores only what ClusterStore writes"
        return None

    def _store(self, namespace: bytes, sid: bytes, value: bytes) -> None:
        now_ms, now = self._now()
        expiry = value[EXPIRY]
        space = self.spaces.get(namespace)
        if expiry <= now:
            if space is not None and sid in space.entries:
                if self.log is not None:
                    self.log(DELETE, namespace, sid, b"")
                del space.entries[sid]
            return
        if self.log is not None:
            self.log(PUT, namespace, sid, value)
        if space is None:
            space = self.spaces[namespace] = Space()
        space.entries[sid] = value
        if expiry != NEVER_BYTES:
            space.note(sid, expiry)
        order = space.order
        if order and order[0] < now_ms // 1000:  # a bucket's second is over: sweep a little
            space.sweep(now_ms, now, 16)

    def destroy(self, namespace: bytes, sid: bytes) -> None:
        space = self.spaces.get(namespace)
        if space is not None and sid in space.entries:
            if self.log is not None:
                self.log(DELETE, namespace, sid, b"")
            del space.entries[sid]

    def touch(self, namespace: bytes, sid: bytes, value: bytes) -> str | None:
        """Give a live session the expiry and ``"cookie"`` of ``value``, whose
        payload is the JSON object ``{"cookie": ...}``, without parsing or
        encoding the session (``wire.touched_value``: one copy of its bytes);
        an error message if ``value`` is refused."""
        renewed = self.renew(namespace, sid, value)
        return renewed if isinstance(renewed, str) else None

    def renew(self, namespace: bytes, sid: bytes, value: bytes) -> bytes | str | None:
        """:meth:`touch`, returning the value as :meth:`get` would have just before it (contract
        renew.1: the caller learns the session's own cookie), None if there was no live session
        or ``value`` expires it, or the error message."""
        problem = value_problem(value)
        if problem is not None:
            return f"touch needs the JSON object {{'cookie': ...}}: {problem}"
        if json_length(value) > MAX_TOUCH_BYTES:
            return (
                f"touch carries {json_length(value)} bytes of JSON; a cookie takes at most {MAX_TOUCH_BYTES}"
            )
        space = self.spaces.get(namespace)
        entry = space.entries.get(sid) if space is not None else None
        if space is None or entry is None:
            return None
        now_ms, now = self._now()
        expiry = value[EXPIRY]
        if entry[EXPIRY] <= now or expiry <= now:
            if self.log is not None:
                self.log(DELETE, namespace, sid, b"")
            del space.entries[sid]
            return None
        if self.log is not None:
            self.log(TOUCH, namespace, sid, value)
        space.entries[sid] = touched_value(expiry, entry, value[JSON])
        if expiry != NEVER_BYTES:
            space.note(sid, expiry)
        space.sweep(now_ms, now, 16)
        return entry

    def length(self, namespace: bytes, budget: int = 1000) -> int | None:
        """The number of live sessions in ``namespace``; None if it first had to
        sweep ``budget`` expired sids and may have more to sweep (call again,
        after letting others have the lock). Once every bucket of a second that
        is over is swept, the expired entries left are in this second's bucket,
        so the count costs that bucket, not the namespace."""
        space = self.spaces.get(namespace)
        if space is None:
            return 0
        now_ms, now = self._now()
        if space.sweep(now_ms, now, budget) <= 0 and space.order and space.order[0] < now_ms // 1000:
            return None
        entries = space.entries
        current = space.buckets.get(now_ms // 1000, ())
        expired = {sid for sid in current if (value := entries.get(sid)) is not None and value[EXPIRY] <= now}
        return len(entries) - len(expired)

    def clear(self, namespace: bytes) -> Space | None:
        """Forget ``namespace``; its entries come back, for the caller to free
        after it has released the lock."""
        if namespace in self.spaces and self.log is not None:
            self.log(CLEAR, namespace, b"", b"")
        return self.spaces.pop(namespace, None)

    def copy(self) -> tuple[dict[bytes, dict[bytes, bytes]], bytes]:
        """A copy of every namespace's entries (one C-level copy each), for a snapshot, and the
        wire time now: an entry of the copy expired by then stays expired (a touch drops it)."""
        return {namespace: space.entries.copy() for namespace, space in self.spaces.items()}, self._now()[1]

    def adopt(self, tables: dict[bytes, dict[bytes, bytes]]) -> int:
        """Hold the live entries of ``tables`` (a replay's result) as every namespace;
        return how many expired ones were dropped."""
        now = self._now()[1]
        self.spaces, dropped = {}, 0
        for namespace, entries in tables.items():
            expired = [sid for sid, value in entries.items() if value[EXPIRY] <= now]
            for sid in expired:
                del entries[sid]
            dropped += len(expired)
            if entries:
                space = self.spaces[namespace] = Space()
                space.entries = entries
                space.rebuild()
        return dropped

    def snapshot(self, namespace: bytes) -> tuple[dict[bytes, bytes], bytes]:
        """A copy of the entries of ``namespace`` and the wire time now: one C-level
        copy under the lock; :meth:`live` filters it after the lock is released."""
        space = self.spaces.get(namespace)
        return ({} if space is None else space.entries.copy()), self._now()[1]

    @staticmethod
    def live(entries: dict[bytes, bytes], now: bytes) -> list[tuple[bytes, bytes]]:
        """(sid, value) of the entries of a :meth:`snapshot` still live at ``now``."""
        return [(sid, value) for sid, value in entries.items() if value[EXPIRY] > now]

    def items(self, namespace: bytes) -> list[tuple[bytes, bytes]]:
        """(sid, value) of every live session in ``namespace``."""
        return self.live(*self.snapshot(namespace))

    def sweep(self, budget: int = 1000) -> bool:
        """Sweep the namespaces, looking at up to ``budget`` sids; True if it
        used the whole budget (there may be more to sweep)."""
        now_ms, now = self._now()
        for space in list(self.spaces.values()):
            budget = space.sweep(now_ms, now, budget)
            if budget <= 0:
                return True
        return False

    def size(self) -> int:
        """Entries held, expired ones not yet swept included."""
        return sum(len(space.entries) for space in self.spaces.values())
