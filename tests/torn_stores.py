"""Stores that are right for one thread and wrong under concurrency, for threads.1's own tests.

``Locked`` is a small correct store (JSON in a dict behind a lock); each other
store gets one concurrency detail wrong, with a yield (``time.sleep(0)``, or
``asyncio.sleep(0)``) where the race is, so that threads.1 meets it within its
normal run. They keep no expiry: threads.1 never lets a session expire.
``field_files`` is a shared target, for process.2: its store keeps a session as
a file per field and writes them one by one. The ``Replace`` stores are for
replace.4 and replace.5: one right, and ones that look before they write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from storekit import Target
from storekit.codec import check_sid

ENV = "STOREKIT_TEST_FIELD_FILES"


class Locked:
    """A correct store: every method holds the lock for all it does."""

    def __init__(self) -> None:
        self._data: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, sid: str) -> Any:
        with self._lock:
            data = self._data.get(check_sid(sid))
        return None if data is None else json.loads(data)

    def set(self, sid: str, session: Any) -> None:
        data = json.dumps(session)
        with self._lock:
            self._data[check_sid(sid)] = data

    def destroy(self, sid: str) -> None:
        with self._lock:
            self._data.pop(check_sid(sid), None)

    def touch(self, sid: str, session: Any) -> None:
        with self._lock:
            data = self._data.get(check_sid(sid))
            if data is not None:
                self._data[sid] = json.dumps({**json.loads(data), "cookie": session.get("cookie")})

    def length(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def all(self) -> dict[str, Any]:
        with self._lock:
            return {sid: json.loads(data) for sid, data in self._data.items()}


class FieldByField(Locked):
    """Writes a session one field at a time, as a store on a Redis hash (an HSET per
    field) or a table with a row per field does: a read between two fields is torn."""

    def __init__(self) -> None:
        super().__init__()
        self._rows: dict[str, dict[str, str]] = {}

    def get(self, sid: str) -> Any:
        with self._lock:
            row = self._rows.get(check_sid(sid))
            return None if row is None else {key: json.loads(value) for key, value in row.items()}

    def set(self, sid: str, session: Any) -> None:
        fields = {key: json.dumps(value) for key, value in session.items()}
        with self._lock:
            row = self._rows.setdefault(check_sid(sid), {})
            for stale in set(row) - set(fields):
                del row[stale]
        for key, value in fields.items():
            with self._lock:
                self._rows.setdefault(sid, {})[key] = value
            time.sleep(0)

    def destroy(self, sid: str) -> None:
        with self._lock:
            self._rows.pop(check_sid(sid), None)

    def touch(self, sid: str, session: Any) -> None:
        with self._lock:
            row = self._rows.get(check_sid(sid))
            if row is not None:
                row["cookie"] = json.dumps(session.get("cookie"))

    def length(self) -> int:
        with self._lock:
            return len(self._rows)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()

    def all(self) -> dict[str, Any]:
        with self._lock:
            return {sid: {k: json.loads(v) for k, v in row.items()} for sid, row in self._rows.items()}


class AsyncFieldByField:
    """:class:`FieldByField` for asyncio: it awaits between two fields."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, str]] = {}

    async def get(self, sid: str) -> Any:
        row = self._rows.get(check_sid(sid))
        return None if row is None else {key: json.loads(value) for key, value in row.items()}

    async def set(self, sid: str, session: Any) -> None:
        fields = {key: json.dumps(value) for key, value in session.items()}
        row = self._rows.setdefault(check_sid(sid), {})
        for stale in set(row) - set(fields):
            del row[stale]
        for key, value in fields.items():
            self._rows.setdefault(sid, {})[key] = value
            await asyncio.sleep(0)

    async def destroy(self, sid: str) -> None:
        self._rows.pop(check_sid(sid), None)


class LocklessLength(Locked):
    """Counts its sessions by walking the dict without the lock, slowly."""

    def length(self) -> int:
        count = 0
        for _ in self._data:
            time.sleep(0)
            count += 1
        return count


class LocklessAll(Locked):
    """Copies its sessions by walking the dict without the lock, slowly."""

    def all(self) -> dict[str, Any]:
        every = {}
        for sid, data in self._data.items():
            time.sleep(0)
            every[sid] = json.loads(data)
        return every


class RacyCount(Locked):
    """Keeps a count beside the dict and updates it outside the lock: updates get lost,
    and length() drifts away from the number of sessions."""

    def __init__(self) -> None:
        super().__init__()
        self._count = 0

    def _add(self, change: int) -> None:
        count = self._count
        time.sleep(0)
        self._count = count + change

    def set(self, sid: str, session: Any) -> None:
        data = json.dumps(session)
        with self._lock:
            new = check_sid(sid) not in self._data
            self._data[sid] = data
        if new:
            self._add(1)

    def destroy(self, sid: str) -> None:
        with self._lock:
            had = self._data.pop(check_sid(sid), None) is not None
        if had:
            self._add(-1)

    def clear(self) -> None:
        with self._lock:
            gone = len(self._data)
            self._data.clear()
        self._add(-gone)

    def length(self) -> int:
        return self._count


class FieldFiles:
    """A shared store: a directory per sid, a file per field, each file replaced
    atomically but one after the other, so another process can read a session
    whose fields come from two writes. Directories stay; a sid without files has
    no session."""

    def __init__(self) -> None:
        self.root = Path(os.environ[ENV])

    def _dir(self, sid: str) -> Path:
        return self.root / check_sid(sid).encode().hex()

    def _files(self, sid: str) -> list[Path]:
        try:
            return list(self._dir(sid).iterdir())
        except FileNotFoundError:
            return []

    def get(self, sid: str) -> Any:
        session = {}
        for path in self._files(sid):
            with contextlib.suppress(FileNotFoundError):
                session[bytes.fromhex(path.name).decode()] = json.loads(path.read_text())
        return session or None

    def set(self, sid: str, session: Any) -> None:
        folder = self._dir(sid)
        folder.mkdir(exist_ok=True)
        names = {key.encode().hex() for key in session}
        for path in self._files(sid):
            if path.name not in names:
                path.unlink(missing_ok=True)
        for key, value in session.items():
            temp = self.root / f".{os.getpid()}.{threading.get_ident()}.{time.monotonic_ns()}"
            temp.write_text(json.dumps(value))
            os.replace(temp, folder / key.encode().hex())

    def destroy(self, sid: str) -> None:
        for path in self._files(sid):
            path.unlink(missing_ok=True)


class LockedReplace(Locked):
    """A correct replace: the look and the write under one hold of the lock."""

    def replace(self, sid: str, session: Any) -> bool:
        data = json.dumps(session)
        with self._lock:
            if check_sid(sid) not in self._data:
                return False
            self._data[sid] = data
            return True


class RacyReplace(Locked):
    """A replace that looks, lets go of the lock, then writes: a destroy in between is undone."""

    def replace(self, sid: str, session: Any) -> bool:
        if self.get(sid) is None:
            return False
        time.sleep(0)
        self.set(sid, session)
        return True


class AsyncRacyReplace:
    """RacyReplace's async twin, yielding to the loop between the look and the write."""

    def __init__(self) -> None:
        self.sync = Locked()

    async def get(self, sid: str) -> Any:
        return self.sync.get(sid)

    async def set(self, sid: str, session: Any) -> None:
        self.sync.set(sid, session)

    async def destroy(self, sid: str) -> None:
        self.sync.destroy(sid)

    async def replace(self, sid: str, session: Any) -> bool:
        if self.sync.get(sid) is None:
            return False
        await asyncio.sleep(0)
        self.sync.set(sid, session)
        return True


class WholeFiles:
    """A shared store whose writes are whole (a file per session, replaced atomically)
    and whose replace looks at the file before it writes, so that a destroy from
    another process in between is undone."""

    def __init__(self) -> None:
        self.root = Path(os.environ[ENV])

    def _path(self, sid: str) -> Path:
        return self.root / check_sid(sid).encode().hex()

    def get(self, sid: str) -> Any:
        try:
            return json.loads(self._path(sid).read_text())
        except FileNotFoundError:
            return None

    def set(self, sid: str, session: Any) -> None:
        temp = self.root / f".{os.getpid()}.{threading.get_ident()}.{time.monotonic_ns()}"
        temp.write_text(json.dumps(session))
        os.replace(temp, self._path(sid))

    def destroy(self, sid: str) -> None:
        self._path(sid).unlink(missing_ok=True)

    def replace(self, sid: str, session: Any) -> bool:
        if not self._path(sid).exists():
            return False
        time.sleep(0.0005)
        self.set(sid, session)
        return True


@contextlib.contextmanager
def _directory() -> Iterator[None]:
    root = tempfile.mkdtemp(prefix="storekit-fieldfiles-")
    os.environ[ENV] = root
    try:
        yield
    finally:
        del os.environ[ENV]
        shutil.rmtree(root, ignore_errors=True)


field_files = Target(FieldFiles, name="FieldFiles", shared=True, serve=_directory, ttl_resolution=0.2)
whole_files = Target(WholeFiles, name="WholeFiles", shared=True, serve=_directory, ttl_resolution=0.2)
