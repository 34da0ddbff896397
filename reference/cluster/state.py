"""The sessions a cluster server holds, with no I/O: the server's only state.

Entries are kept as compactly as Python allows, since a master may hold
millions: one ``dict`` per namespace maps the UTF-8 sid (``bytes``) to one
``bytes`` value, the wire's expiry (milliseconds, big-endian) followed by the
encoded JSON, exactly as it arrived in the set request. Comparing
``value[EXPIRY] <= now`` tells whether an entry has expired, with no per-entry
tuple or float. Expired entries are dropped when read, and swept in the
background through per-second buckets of sids (8 bytes of list slot per
entry), a little on every write and a little on every server tick, so that
dead sessions do not pile up. The semantics are MemoryStore's.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Callable
from typing import Any

from storekit.reference.cluster.wire import (
    EXPIRY,
    JSON,
    NEVER_BYTES,
    expiry_millis,
    json_length,
    millis_expiry,
)

__all__ = ["ClusterState", "Space"]


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
            self._rebuild()

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

    def _rebuild(self) -> None:
        """Forget stale bucket slots left behind by sessions set again."""
        self.buckets, self.order, self.refs = {}, [], 0
        for sid, value in self.entries.items():
            expiry = value[EXPIRY]
            if expiry != NEVER_BYTES:
                self.note(sid, expiry)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class ClusterState:
    """Namespaces of sessions; every method runs on the server thread only.

    ``clock`` returns POSIX seconds and can be replaced in tests.
    """

    def __init__(self, *, max_session_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self.max_session_bytes = max_session_bytes
        self.clock = clock
        self.spaces: dict[bytes, Space] = {}

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
        if json_length(value) > self.max_session_bytes:
            return (
                f"the session is {json_length(value)} bytes of JSON; the cluster server keeps "
                f"at most {self.max_session_bytes} (raise max_session_bytes in setup())"
            )
        now_ms, now = self._now()
        expiry = value[EXPIRY]
        space = self.spaces.get(namespace)
        if expiry <= now:
            if space is not None:
                space.entries.pop(sid, None)
            return None
        if space is None:
            space = self.spaces[namespace] = Space()
        space.entries[sid] = value
        if expiry != NEVER_BYTES:
            space.note(sid, expiry)
        order = space.order
        if order and order[0] < now_ms // 1000:  # a bucket's second is over: sweep a little
            space.sweep(now_ms, now, 16)
        return None

    def destroy(self, namespace: bytes, sid: bytes) -> None:
        space = self.spaces.get(namespace)
        if space is not None:
            space.entries.pop(sid, None)

    def touch(self, namespace: bytes, sid: bytes, value: bytes) -> str | None:
        """Give a live session the expiry and ``"cookie"`` of ``value``, whose
        payload is the JSON object ``{"cookie": ...}``; an error message if
        the result cannot be kept."""
        space = self.spaces.get(namespace)
        entry = space.entries.get(sid) if space is not None else None
        if space is None or entry is None:
            return None
        now_ms, now = self._now()
        expiry = value[EXPIRY]
        if entry[EXPIRY] <= now or expiry <= now:
            del space.entries[sid]
            return None
        try:
            stored = json.loads(entry[JSON], parse_constant=_reject_constant)
            patch = json.loads(value[JSON], parse_constant=_reject_constant)
            if not isinstance(stored, dict) or not isinstance(patch, dict):
                return "touch needs a stored JSON object and a {'cookie': ...} object"
            stored["cookie"] = patch.get("cookie")
            text = json.dumps(stored, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            data = text.encode("utf-8")
        except (ValueError, RecursionError) as exc:
            return f"touch could not rewrite the stored session: {exc}"
        if len(data) > self.max_session_bytes:
            return (
                f"after touch the session is {len(data)} bytes of JSON; the cluster server keeps "
                f"at most {self.max_session_bytes}"
            )
        space.entries[sid] = expiry + data
        if expiry != NEVER_BYTES:
            space.note(sid, expiry)
        space.sweep(now_ms, now, 16)
        return None

    def length(self, namespace: bytes) -> int:
        space = self.spaces.get(namespace)
        if space is None:
            return 0
        now = self._now()[1]
        return sum(1 for value in space.entries.values() if value[EXPIRY] > now)

    def clear(self, namespace: bytes) -> None:
        self.spaces.pop(namespace, None)

    def items(self, namespace: bytes) -> list[tuple[bytes, bytes]]:
        """(sid, value) of every live session in ``namespace``."""
        space = self.spaces.get(namespace)
        if space is None:
            return []
        now = self._now()[1]
        return [(sid, value) for sid, value in space.entries.items() if value[EXPIRY] > now]

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
