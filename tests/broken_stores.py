"""Stores that each break one clause of the contract, for the plugin's own tests.

``DictStore`` is a small, correct store written independently of MemoryStore;
each subclass changes one behaviour, and ``BROKEN`` says which clause that
must fail, and only that clause. ``UNUSABLE`` holds targets the suite cannot
run at all (a factory that raises, returns no store, or returns one shared
instance that the suite closes), which the target check must stop before the
suite runs; ``SqliteStore`` keeps sessions in a SQL table named after its
namespace.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
import time
import unicodedata
from fnmatch import fnmatchcase
from typing import Any, ClassVar

from storekit import InvalidSessionData, Target
from storekit.codec import check_sid, encode_session, session_expiry

RESOLUTION = 0.2


class DictStore:
    """A correct store: JSON copies in a dict, with expiry, behind a lock."""

    def __init__(self, space: dict[str, tuple[Any, float | None]] | None = None, prefix: str = "") -> None:
        self._data: dict[str, tuple[Any, float | None]] = {} if space is None else space
        self._prefix = prefix
        self._lock = threading.RLock()

    # the storage format: hooks that subclasses may break
    def _key(self, sid: str) -> str:
        return self._prefix + check_sid(sid)

    def _pack(self, session: Any) -> Any:
        return encode_session(session)

    def _unpack(self, packed: Any) -> Any:
        return json.loads(packed)

    def _live(self, expires: float | None, now: float) -> bool:
        return expires is None or expires > now

    def _mine(self) -> list[str]:
        return [key for key in self._data if key.startswith(self._prefix)]

    def get(self, sid: str) -> Any:
        key = self._key(sid)
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            if not self._live(entry[1], time.time()):
                del self._data[key]
                return None
            return self._unpack(entry[0])

    def set(self, sid: str, session: Any) -> None:
        key = self._key(sid)
        packed = self._pack(session)
        expires = session_expiry(session)
        with self._lock:
            if expires is not None and expires <= time.time():
                self._data.pop(key, None)
            else:
                self._data[key] = (packed, expires)

    def destroy(self, sid: str) -> None:
        with self._lock:
            self._data.pop(self._key(sid), None)

    def touch(self, sid: str, session: Any) -> None:
        key = self._key(sid)
        expires = session_expiry(session)
        now = time.time()
        with self._lock:
            entry = self._data.get(key)
            if entry is None or not self._live(entry[1], now):
                return
            if expires is not None and expires <= now:
                del self._data[key]
                return
            self._data[key] = (entry[0], expires)

    def length(self) -> int:
        return len(self.all())

    def clear(self) -> None:
        with self._lock:
            for key in self._mine():
                del self._data[key]

    def all(self) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            return {
                key[len(self._prefix) :]: self._unpack(self._data[key][0])
                for key in self._mine()
                if self._live(self._data[key][1], now)
            }


class Replacing(DictStore):
    """DictStore with a correct replace (contract version 2): the look and the write under one lock."""

    def replace(self, sid: str, session: Any) -> bool:
        key = self._key(sid)
        packed = self._pack(session)
        expires = session_expiry(session)
        with self._lock:
            entry = self._data.get(key)
            if entry is None or not self._live(entry[1], time.time()):
                return False
            if expires is not None and expires <= time.time():
                del self._data[key]
            else:
                self._data[key] = (packed, expires)
            return True


class ReplaceCreates(Replacing):
    """replace is a set: it writes whether or not a session is there."""

    def replace(self, sid: str, session: Any) -> bool:
        self.set(sid, session)
        return True


class ReplaceChecksLate(Replacing):
    """replace looks for the session before it checks what it was given."""

    def replace(self, sid: str, session: Any) -> bool:
        if self.get(sid) is None:
            return False
        return super().replace(sid, session)


class ReplaceKeepsExpiry(Replacing):
    """replace writes the data and keeps the old expiry."""

    def replace(self, sid: str, session: Any) -> bool:
        key = self._key(sid)
        packed = self._pack(session)
        session_expiry(session)
        with self._lock:
            entry = self._data.get(key)
            if entry is None or not self._live(entry[1], time.time()):
                return False
            self._data[key] = (packed, entry[1])
            return True


class ReplaceLooksFirst(Replacing):
    """replace looks, lets go of the lock, then writes: a destroy in between is undone."""

    def replace(self, sid: str, session: Any) -> bool:
        self._pack(session)  # refuses what set refuses, as replace.2 asks
        session_expiry(session)
        if self.get(sid) is None:
            return False
        time.sleep(0)
        self.set(sid, session)
        return True


class Renewing(DictStore):
    """DictStore with a correct renew (contract version 2): touch and get under one lock."""

    def renew(self, sid: str, session: Any) -> Any:
        with self._lock:
            found = self.get(sid)
            self.touch(sid, session)
            return None if self.get(sid) is None else found


class RenewKeepsExpiry(Renewing):
    """renew reads and forgets to renew (though it does remove for a past expiry)."""

    def renew(self, sid: str, session: Any) -> Any:
        expires = session_expiry(session)
        if expires is not None and expires <= time.time():
            self.destroy(sid)
            return None
        return self.get(sid)


class RenewCreates(Renewing):
    """renew of a sid with no session stores the argument."""

    def renew(self, sid: str, session: Any) -> Any:
        with self._lock:
            if self.get(sid) is None:
                self.set(sid, session)
            return super().renew(sid, session)


class RenewIgnoresPast(Renewing):
    """renew with a past expiry leaves the session as it was."""

    def renew(self, sid: str, session: Any) -> Any:
        expires = session_expiry(session)
        if expires is not None and expires <= time.time():
            return self.get(sid)
        return super().renew(sid, session)


class LaxSids(DictStore):
    def _key(self, sid: Any) -> str:
        return check_sid(str(sid) if sid != "" else sid)


class NormalizingSids(DictStore):
    def _key(self, sid: str) -> str:
        return unicodedata.normalize("NFC", check_sid(sid))


class GlobDestroy(DictStore):
    def destroy(self, sid: str) -> None:
        with self._lock:
            for key in [k for k in self._data if fnmatchcase(k, sid)] or [self._key(sid)]:
                self._data.pop(key, None)


class GetCreates(DictStore):
    """A get of a sid never stored leaves an empty record behind (a DoS vector)."""

    def __init__(self) -> None:
        super().__init__()
        self._phantoms: set[str] = set()
        self._seen: set[str] = set()

    def get(self, sid: str) -> Any:
        found = super().get(sid)
        if found is None and sid not in self._seen:
            self._phantoms.add(sid)
        return found

    def all(self) -> dict[str, Any]:
        return {**{sid: {} for sid in self._phantoms}, **super().all()}

    def set(self, sid: str, session: Any) -> None:
        super().set(sid, session)
        self._seen.add(sid)
        self._phantoms.discard(sid)

    def clear(self) -> None:
        self._phantoms.clear()
        super().clear()


class DeepCopies(DictStore):
    def _pack(self, session: Any) -> Any:
        encode_session(session)
        return copy.deepcopy(session)

    def _unpack(self, packed: Any) -> Any:
        return copy.deepcopy(packed)


class Aliasing(DictStore):
    """get hands out the stored object itself."""

    def get(self, sid: str) -> Any:
        with self._lock:  # one step (the lock is re-entrant): a set between two would be undone
            found = super().get(sid)
            entry = self._data.get(self._key(sid))
            if found is None or entry is None:
                return None
            if not isinstance(entry[0], dict):
                entry = self._data[self._key(sid)] = (found, entry[1])
            return entry[0]

    def _unpack(self, packed: Any) -> Any:
        return copy.deepcopy(packed) if isinstance(packed, dict) else json.loads(packed)


class Merging(DictStore):
    def set(self, sid: str, session: Any) -> None:
        self._pack(session)
        old = self.get(sid)
        super().set(sid, {**old, **session} if old else session)


class LaxJson(DictStore):
    """Trusts json.dumps: int keys become strings, NaN and anything str() can show get in."""

    def _pack(self, session: Any) -> Any:
        if not isinstance(session, dict):
            raise InvalidSessionData("not a dict")
        packed = json.dumps(session, default=str, separators=(",", ":"))
        if len(packed.encode()) > 1 << 20:
            raise InvalidSessionData("too large")
        return packed


class NulTruncating(DictStore):
    def _pack(self, session: Any) -> Any:
        super()._pack(session)
        return super()._pack(json.loads(json.dumps(session).replace("\\u0000", "")))


class SmallLimit(DictStore):
    def _pack(self, session: Any) -> Any:
        return encode_session(session, max_bytes=512 * 1024)


class DestroyForgets(DictStore):
    def destroy(self, sid: str) -> None:
        self._key(sid)


class DestroyRaises(DictStore):
    def destroy(self, sid: str) -> None:
        with self._lock:
            del self._data[self._key(sid)]


class DestroyByPrefix(DictStore):
    def destroy(self, sid: str) -> None:
        key = self._key(sid)
        with self._lock:
            for other in [k for k in self._data if k.startswith(key)]:
                del self._data[other]


class ExpiresEarly(DictStore):
    def _live(self, expires: float | None, now: float) -> bool:
        return expires is None or expires - 0.5 > now


class AllShowsExpired(DictStore):
    def all(self) -> dict[str, Any]:
        with self._lock:
            return {key: self._unpack(self._data[key][0]) for key in self._mine()}

    def length(self) -> int:
        return len(super().all())


class PastSetIgnored(DictStore):
    def set(self, sid: str, session: Any) -> None:
        self._pack(session)
        expires = session_expiry(session)
        if expires is not None and expires <= time.time():
            return
        super().set(sid, session)


class FirstExpiryKept(DictStore):
    def set(self, sid: str, session: Any) -> None:
        self._pack(session)
        key = self._key(sid)
        expires = session_expiry(session)
        with self._lock:
            entry = self._data.get(key)
        if entry is None or entry[1] is None or (expires is not None and expires <= time.time()):
            super().set(sid, session)
            return
        with self._lock:
            self._data[key] = (self._pack(session), entry[1])


class CookieWithoutExpiresIsDropped(DictStore):
    def set(self, sid: str, session: Any) -> None:
        self._pack(session)
        cookie = session.get("cookie") if isinstance(session, dict) else None
        if isinstance(cookie, dict) and "expires" not in cookie:
            self._pack(session)
            self.destroy(sid)
            return
        super().set(sid, session)


class NaiveExpiresAccepted(DictStore):
    def set(self, sid: str, session: Any) -> None:
        cookie = session.get("cookie") if isinstance(session, dict) else None
        expires = cookie.get("expires") if isinstance(cookie, dict) else None
        if isinstance(expires, str) and len(expires) == 19:
            session = {**session, "cookie": {**cookie, "expires": expires + "Z"}}  # type: ignore[dict-item]
        super().set(sid, session)


class TouchRewrites(DictStore):
    def touch(self, sid: str, session: Any) -> None:
        if self.get(sid) is not None:
            self.set(sid, session)


class TouchCreates(DictStore):
    def touch(self, sid: str, session: Any) -> None:
        if self.get(sid) is None:
            self.set(sid, session)
        super().touch(sid, session)


class TouchIgnoresPast(DictStore):
    def touch(self, sid: str, session: Any) -> None:
        expires = session_expiry(session)
        if expires is None or expires > time.time():
            super().touch(sid, session)


class LengthCountsOverwrites(DictStore):
    def __init__(self) -> None:
        super().__init__()
        self._overwrites = 0

    def set(self, sid: str, session: Any) -> None:
        if self.get(sid) is not None:
            self._overwrites += 1
        super().set(sid, session)

    def length(self) -> int:
        return super().length() + self._overwrites

    def clear(self) -> None:
        self._overwrites = 0
        super().clear()


class ClearForgets(DictStore):
    def clear(self) -> None:
        pass


class ClearOfEmptyRaises(DictStore):
    def clear(self) -> None:
        if not self._mine():
            raise KeyError("nothing to clear")
        super().clear()


_SHARED_SPACE: dict[str, tuple[Any, float | None]] = {}


class ClearEverything(DictStore):
    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class AllAsList(DictStore):
    def all(self) -> list[Any]:  # type: ignore[override]
        return [{"id": sid, **session} for sid, session in super().all().items()]


class TornSet(DictStore):
    def set(self, sid: str, session: Any) -> None:
        key = self._key(sid)
        packed, expires = self._pack(session), session_expiry(session)
        self._data.pop(key, None)
        time.sleep(0.0005)
        self._data[key] = (packed, expires)


class Minimal:
    """Only the required methods: the optional ones are "not offered"."""

    def __init__(self) -> None:
        self._inner = DictStore()

    def get(self, sid: str) -> Any:
        return self._inner.get(sid)

    def set(self, sid: str, session: Any) -> None:
        self._inner.set(sid, session)

    def destroy(self, sid: str) -> None:
        self._inner.destroy(sid)


class DestroyCreates(DictStore):
    """destroy of an unknown sid leaves an empty session behind."""

    def destroy(self, sid: str) -> None:
        with self._lock:
            if self._data.pop(self._key(sid), None) is None:
                self._data[self._key(sid)] = (self._pack({}), None)


class EmptyForUnknown(DictStore):
    """get of an unknown sid returns {} instead of None (breaks get.1)."""

    def get(self, sid: str) -> Any:
        found = super().get(sid)
        return {} if found is None else found


class SqliteStore:
    """Sessions in a SQL table named after the namespace.

    The table name is written into the SQL as it is, as stores that keep one
    table per namespace do; a namespace that is not a plain identifier breaks it.
    ``close()`` closes the connection if the store opened it. Stores that
    share a connection share its transaction, so they share one lock too.
    """

    _locks: ClassVar[dict[int, threading.Lock]] = {}

    def __init__(self, connection: sqlite3.Connection | None = None, table: str = "sessions") -> None:
        self._owned = connection is None
        self._db = connection or sqlite3.connect(":memory:", check_same_thread=False)
        self._table = table
        self._lock = self._locks.setdefault(id(self._db), threading.Lock())
        with self._lock, self._db:
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (sid TEXT PRIMARY KEY, data TEXT, expires REAL)"
            )

    def get(self, sid: str) -> Any:
        check_sid(sid)
        query = f"SELECT data, expires FROM {self._table} WHERE sid = ?"
        with self._lock:
            row = self._db.execute(query, (sid,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= time.time()):
            return None
        return json.loads(row[0])

    def set(self, sid: str, session: Any) -> None:
        check_sid(sid)
        data, expires = encode_session(session).decode(), session_expiry(session)
        with self._lock, self._db:
            if expires is not None and expires <= time.time():
                self._db.execute(f"DELETE FROM {self._table} WHERE sid = ?", (sid,))
            else:
                query = f"INSERT OR REPLACE INTO {self._table} VALUES (?, ?, ?)"
                self._db.execute(query, (sid, data, expires))

    def destroy(self, sid: str) -> None:
        check_sid(sid)
        with self._lock, self._db:
            self._db.execute(f"DELETE FROM {self._table} WHERE sid = ?", (sid,))

    def clear(self) -> None:
        with self._lock, self._db:
            self._db.execute(f"DELETE FROM {self._table}")

    def length(self) -> int:
        query = f"SELECT COUNT(*) FROM {self._table} WHERE expires IS NULL OR expires > ?"
        with self._lock:
            (count,) = self._db.execute(query, (time.time(),)).fetchone()
        return int(count)

    def close(self) -> None:
        if self._owned:
            self._db.close()


class ClosesSharedConnection(SqliteStore):
    """Closes the connection it was given, which other stores use too."""

    def close(self) -> None:
        self._db.close()


class NoSet:
    def get(self, sid: str) -> Any:
        return None

    def destroy(self, sid: str) -> None:
        pass


class MixedAsync(DictStore):
    async def get(self, sid: str) -> Any:  # type: ignore[override]
        return super().get(sid)


def _raising_factory() -> Any:
    raise RuntimeError("no database at localhost:5432")


def _refusing_hook(namespace: str) -> Any:
    raise ValueError(f"no table may be named {namespace!r}")


_ONE_SQLITE = SqliteStore()
_ONE_CONNECTION = sqlite3.connect(":memory:", check_same_thread=False)
_TABLES = sqlite3.connect(":memory:", check_same_thread=False)


def _target(factory: Any, name: str, **options: Any) -> Target:
    return Target(factory, name=name, ttl_resolution=RESOLUTION, **options)


correct = _target(DictStore, "correct")
replacing = _target(Replacing, "replacing")
renewing = _target(Renewing, "renewing")
minimal = _target(Minimal, "minimal")

_CATALOGUE: dict[str, tuple[str, Any]] = {
    "lax_sids": ("sid.1", LaxSids),
    "normalizing_sids": ("sid.2", NormalizingSids),
    "glob_destroy": ("sid.3", GlobDestroy),
    "get_creates": ("get.1", GetCreates),
    "deep_copies": ("get.2", DeepCopies),
    "aliasing": ("get.3", Aliasing),
    "merging": ("set.1", Merging),
    "lax_json": ("set.2", LaxJson),
    "nul_truncating": ("set.3", NulTruncating),
    "small_limit": ("set.4", SmallLimit),
    "destroy_forgets": ("destroy.1", DestroyForgets),
    "destroy_raises": ("destroy.2", DestroyRaises),
    "destroy_by_prefix": ("destroy.3", DestroyByPrefix),
    "expires_early": ("ttl.1", ExpiresEarly),
    "all_shows_expired": ("ttl.2", AllShowsExpired),
    "past_set_ignored": ("ttl.3", PastSetIgnored),
    "first_expiry_kept": ("ttl.4", FirstExpiryKept),
    "cookie_without_expires_dropped": ("ttl.5", CookieWithoutExpiresIsDropped),
    "naive_expires_accepted": ("ttl.6", NaiveExpiresAccepted),
    "touch_rewrites": ("touch.1", TouchRewrites),
    "touch_creates": ("touch.2", TouchCreates),
    "touch_ignores_past": ("touch.3", TouchIgnoresPast),
    "length_counts_overwrites": ("length.1", LengthCountsOverwrites),
    "clear_forgets": ("clear.1", ClearForgets),
    "clear_of_empty_raises": ("clear.2", ClearOfEmptyRaises),
    "all_as_list": ("all.1", AllAsList),
    "replace_creates": ("replace.1", ReplaceCreates),
    "replace_checks_late": ("replace.2", ReplaceChecksLate),
    "replace_keeps_expiry": ("replace.3", ReplaceKeepsExpiry),
    "replace_looks_first": ("replace.4", ReplaceLooksFirst),
    "renew_keeps_expiry": ("renew.1", RenewKeepsExpiry),
    "renew_creates": ("renew.2", RenewCreates),
    "renew_ignores_past": ("renew.3", RenewIgnoresPast),
    "torn_set": ("threads.1", TornSet),
}

BROKEN: dict[str, tuple[str, Target]] = {
    name: (clause, _target(factory, name)) for name, (clause, factory) in _CATALOGUE.items()
}
BROKEN["clear_everything"] = (
    "clear.3",
    _target(
        lambda: ClearEverything(_SHARED_SPACE),
        "clear_everything",
        namespaced=lambda ns: ClearEverything(_SHARED_SPACE, prefix=ns + "/"),
    ),
)
"""Each broken store's name: the one clause it must fail, and its target."""

globals().update({name: target for name, (_, target) in BROKEN.items()})

destroy_creates = _target(DestroyCreates, "destroy_creates")
empty_for_unknown = _target(EmptyForUnknown, "empty_for_unknown")
sqlite_tables = _target(
    SqliteStore, "sqlite_tables", namespaced=lambda namespace: SqliteStore(_TABLES, namespace)
)
"""One SQLite table per namespace on one connection: it works when namespaces are plain identifiers."""

UNUSABLE: dict[str, Target] = {
    "raising_factory": _target(_raising_factory, "raising_factory"),
    "returns_none": _target(lambda: None, "returns_none"),
    "returns_a_class": _target(lambda: DictStore, "returns_a_class"),
    "lacks_set": _target(NoSet, "lacks_set"),
    "mixed_async": _target(MixedAsync, "mixed_async"),
    "one_instance": _target(lambda: _ONE_SQLITE, "one_instance", shared=True),
    "one_connection": _target(lambda: ClosesSharedConnection(_ONE_CONNECTION), "one_connection", shared=True),
    "refusing_namespaces": _target(DictStore, "refusing_namespaces", namespaced=_refusing_hook),
}
"""Targets the suite cannot run at all, each stopped by the target check."""

globals().update(UNUSABLE)
