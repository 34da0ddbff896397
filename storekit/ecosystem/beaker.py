"""Beaker's memory and file session backends as session stores.

Each operation drives ``beaker.session.Session`` with ``use_cookies=False`` and
the sid as its ``id``, as Beaker's SessionMiddleware does with the id from the
cookie. Where it must translate, the adapter says so:

* ``get`` loads the session; Beaker marks a session it did not find as
  ``is_new``, which the adapter reads as ``None``. The keys Beaker adds itself,
  ``_creation_time``, ``_accessed_time``, ``_domain`` and ``_path``, are removed
  from what it returns;
* ``set`` loads, replaces the data with Beaker's ``clear()`` and ``update()``
  (keeping Beaker's own keys, as every Beaker session has them) and ``save()``s
  it, pickled by Beaker; a session that ``update()`` refuses (not a mapping)
  raises InvalidSessionData;
* ``destroy`` is Beaker's ``delete()`` followed by ``save()``, as the middleware
  persists a deleted session;
* ``touch`` is Beaker's ``save(accessed_only=True)`` (what ``persist()`` does
  for a session that was only read): it writes the data as loaded, with a new
  ``_accessed_time``;
* expiry: Beaker expires a session on the server after ``timeout`` seconds
  without access, one setting for the whole app, checked on load; it has no
  expiry per session, so ``cookie.expires`` is kept as data and nothing more.
  The targets use Beaker's default, ``timeout=None``: sessions do not time out.
  Beaker cannot count, list or clear sessions: ``length``, ``all`` and
  ``clear`` are not offered.
"""

from __future__ import annotations

import time
from typing import Any

from beaker.session import Session as BeakerSession

from storekit.contract import Session
from storekit.ecosystem._common import require_sid, serving, temp_dir
from storekit.errors import InvalidSessionData, cut
from storekit.target import Target

__all__ = ["BEAKER_KEYS", "BeakerStore", "file_target", "memory_target"]

BEAKER_KEYS = ("_creation_time", "_accessed_time", "_domain", "_path")
"""The keys Beaker keeps in every session's data: two times and the cookie's domain and path."""

_TIMES = BEAKER_KEYS[:2]


class BeakerStore:
    """A storekit store over Beaker sessions of ``type`` (``"memory"`` or ``"file"``)."""

    def __init__(
        self, type: str = "memory", *, data_dir: str | None = None, timeout: int | None = None
    ) -> None:
        self.type = type
        self.data_dir = data_dir
        self.timeout = timeout

    def _load(self, sid: object) -> Any:
        return BeakerSession(
            {},
            id=require_sid(sid),
            use_cookies=False,
            type=self.type,
            data_dir=self.data_dir,
            timeout=self.timeout,
        )

    def get(self, sid: str) -> Session | None:
        session = self._load(sid)
        if session.is_new:
            return None
        return {key: value for key, value in session.items() if key not in BEAKER_KEYS}

    def set(self, sid: str, session: Session) -> None:
        beaker = self._load(sid)
        now = time.time()
        kept = {key: beaker.get(key, now) for key in _TIMES}
        beaker.clear()
        try:
            beaker.update(session)
        except (TypeError, ValueError) as exc:  # a Beaker session is a dict
            raise InvalidSessionData(
                f"a Beaker session is a dict; cannot store {cut(session)}: {exc}"
            ) from exc
        beaker.update(kept)
        beaker.save()

    def destroy(self, sid: str) -> None:
        beaker = self._load(sid)
        beaker.delete()
        beaker.save()

    def touch(self, sid: str, session: Session) -> None:
        self._load(sid).save(accessed_only=True)

    def __repr__(self) -> str:
        return f"BeakerStore({self.type!r}, data_dir={self.data_dir!r})"


memory_target = Target(lambda: BeakerStore("memory"), name="Beaker memory")
"""Beaker's memory backend: one process's memory, shared by every Session in it."""


def _directory() -> str:
    return temp_dir("beaker_files")


file_target = Target(
    lambda: BeakerStore("file", data_dir=_directory()),
    name="Beaker file",
    shared=True,
    serve=lambda: serving(_directory),
)
"""Beaker's file backend, in a fresh temporary ``data_dir`` per run."""
