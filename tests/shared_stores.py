"""Shared stores for the process and errors clauses' own tests.

``FileStore`` keeps each session in a file of a directory that every process
reaches through an environment variable set by the target's ``serve()``;
writes are atomic renames, so it is linearizable per sid. The broken ones
each get one thing wrong.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from storekit import StoreUnavailable, Target
from storekit.codec import check_sid, decode_session, encode_session, session_expiry
from storekit.reference import MemoryStore

ENV = "STOREKIT_TEST_FILESTORE"


class FileStore:
    def __init__(self) -> None:
        self.root = Path(os.environ[ENV])

    def _path(self, sid: str) -> Path:
        return self.root / check_sid(sid).encode().hex()

    def _backend(self) -> Path:
        if not self.root.is_dir():
            raise StoreUnavailable(f"the store directory {str(self.root)!r} is gone")
        return self.root

    def get(self, sid: str) -> Any:
        path = self._path(sid)
        self._backend()
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        expires, _, data = raw.partition(b"\n")
        if expires and float(expires) <= time.time():
            return None
        return decode_session(data)

    def set(self, sid: str, session: Any) -> None:
        path = self._path(sid)
        data = encode_session(session)
        expires = session_expiry(session)
        root = self._backend()
        if expires is not None and expires <= time.time():
            path.unlink(missing_ok=True)
            return
        temp = root / f".{os.getpid()}.{time.monotonic_ns()}"
        temp.write_bytes((b"" if expires is None else repr(expires).encode()) + b"\n" + data)
        os.replace(temp, path)

    def destroy(self, sid: str) -> None:
        path = self._path(sid)
        self._backend()
        path.unlink(missing_ok=True)


class NoneOnOutage(FileStore):
    """Treats a vanished backend as an empty one."""

    def _backend(self) -> Path:
        return self.root


@contextlib.contextmanager
def _directory() -> Iterator[None]:
    root = tempfile.mkdtemp(prefix="storekit-filestore-")
    os.environ[ENV] = root
    try:
        yield
    finally:
        del os.environ[ENV]
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _outage() -> Iterator[None]:
    root = Path(os.environ[ENV])
    away = root.with_name(root.name + "-away")
    root.rename(away)
    try:
        yield
    finally:
        away.rename(root)


file_store = Target(
    FileStore, name="file_store", shared=True, serve=_directory, outage=_outage, ttl_resolution=0.2
)
none_on_outage = Target(
    NoneOnOutage, name="none_on_outage", shared=True, serve=_directory, outage=_outage, ttl_resolution=0.2
)
local_claiming_shared = Target(MemoryStore, name="local_claiming_shared", shared=True, ttl_resolution=0.2)
