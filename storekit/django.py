"""A Django session engine backed by any conforming store.

    # settings.py
    SESSION_ENGINE = "storekit.django"
    STOREKIT_SESSION_STORE = "storekit.reference:MemoryStore"

``STOREKIT_SESSION_STORE`` names, as ``"module:attribute"``, a store, a
zero-argument callable returning one (a class, a factory function), or a
:class:`storekit.Target`, whose factory is used. The callable is called once
per process, on first use, so a store that must be built in each worker
process (``storekit.reference.cluster:ClusterStore``) works as it should.

The session keys are Django's own (32 characters of ``[a-z0-9]``). The stored
session is Django's data plus ``cookie``, whose ``expires`` is
``get_expiry_date()``, so the store expires the session itself and
``clear_expired()`` has nothing to do. The record is written and read by the
session core (:mod:`storekit.lifecycle`), as under WSGI and Flask: the
``cookie`` JSON by :func:`storekit.codec.cookie_json`, and an app key named
``cookie`` kept under ``storekit.key:cookie``. When to save and what cookie
to send is Django's ``SessionMiddleware``'s to decide. Django's semantics are kept:
``load()`` never creates anything, ``save(must_create=True)`` raises
CreateError for a key that exists, ``save()`` raises UpdateError when the
session has vanished, and a key the store refuses is treated as no session at
all. ``save()`` and ``delete()`` are the core's live write and destroy
(:func:`storekit.session.write_live`, :func:`storekit.session.destroy_record`):
the store's ``replace`` where it has one, else the narrow window those
functions state, so a logout in another request is not undone by a slow one.

Django loads a session when the view first uses it, so during a store outage
a view that never touches ``request.session`` works; one that does gets the
store's error, which Django answers with a 500 and logs on ``django.request``
(Django's session API has no other way to say it).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.core.exceptions import ImproperlyConfigured

from storekit.codec import cookie_json
from storekit.contract import check_store, store_kind
from storekit.errors import InvalidSessionId, cut
from storekit.lifecycle import RESERVED_PREFIXES, record_of, split_record
from storekit.live import destroy_record, write_live
from storekit.resolve import ResolveError, resolve

__all__ = ["SETTING", "SessionStore", "get_store"]

SETTING = "STOREKIT_SESSION_STORE"
"""The setting that names the store, as ``"module:attribute"``."""

_lock = threading.Lock()
_stores: dict[tuple[int, str], Any] = {}


def _build(spec: str) -> Any:
    try:
        found = resolve(spec, example="'storekit.reference:MemoryStore'")
    except ResolveError as exc:
        raise ImproperlyConfigured(f"{SETTING} = {spec!r}: {exc}") from None
    from storekit.target import Target

    if isinstance(found, Target):
        found = found.factory
    if callable(found) and not _is_store(found):
        found = found()  # a class or a factory
    try:
        return check_store(found, SETTING, kind="sync")
    except TypeError as exc:
        raise ImproperlyConfigured(
            f"{SETTING} = {spec!r} gave {exc}; name a sync store, a callable returning one, "
            "or a storekit.Target"
        ) from None


def _is_store(obj: object) -> bool:
    """Whether ``obj`` is already a store (one that happens to be callable is not called)."""
    try:
        store_kind(obj)
    except TypeError:
        return False
    return True


def get_store() -> Any:
    """The store that ``STOREKIT_SESSION_STORE`` names, built once per process."""
    spec = getattr(settings, SETTING, None)
    if not isinstance(spec, str):
        raise ImproperlyConfigured(
            f"SESSION_ENGINE = 'storekit.django' needs the {SETTING} setting: the store as "
            f"'module:attribute', e.g. {SETTING} = 'storekit.reference:MemoryStore'; got {cut(spec)}"
        )
    key = (os.getpid(), spec)
    with _lock:
        if key not in _stores:
            _stores[key] = _build(spec)
        return _stores[key]


def _same_site(value: object) -> str | None:
    """Django's ``SESSION_COOKIE_SAMESITE`` as the core writes it (lower case), or None (``False``)."""
    return value.lower() if isinstance(value, str) else None


class SessionStore(SessionBase):  # type: ignore[misc]  # Django ships no type hints
    """Django's ``SessionStore`` for ``SESSION_ENGINE = "storekit.django"``."""

    @property
    def store(self) -> Any:
        return get_store()

    def _validate_session_key(self, key: str | None) -> bool:
        """Django's rule (8 or more characters), and never one of storekit's own records: a
        client must not load or destroy a group index or a logout marker by naming it."""
        return bool(super()._validate_session_key(key)) and not str(key).startswith(RESERVED_PREFIXES)

    def _record(self, data: dict[str, Any]) -> dict[str, Any]:
        cookie = cookie_json(
            max_age=self.get_expiry_age(),
            expires=self.get_expiry_date().timestamp(),
            http_only=settings.SESSION_COOKIE_HTTPONLY,
            path=settings.SESSION_COOKIE_PATH,
            secure=settings.SESSION_COOKIE_SECURE,
            domain=settings.SESSION_COOKIE_DOMAIN,
            same_site=_same_site(settings.SESSION_COOKIE_SAMESITE),
        )
        return record_of(data, cookie, {})

    def _fetch(self, key: str | None) -> dict[str, Any] | None:
        if key is None:
            return None
        try:
            record: dict[str, Any] | None = self.store.get(key)
        except InvalidSessionId:
            return None  # a key from a cookie that the store cannot hold: no session
        return record

    def load(self) -> dict[str, Any]:
        key = self.session_key
        record = self._fetch(key)
        if key is None or record is None:
            self._session_key = None
            return {}
        data, _, _ = split_record(key, record)
        return data

    def exists(self, session_key: str | None) -> bool:
        return self._fetch(session_key) is not None

    def create(self) -> None:
        while True:
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        key = self.session_key
        if must_create:
            if self.exists(key):
                raise CreateError
            self.store.set(key, self._record(self._get_session(no_load=True)))
        elif not write_live(self.store, key, self._record(self._get_session())):
            raise UpdateError  # destroyed elsewhere (a logout) while this request ran
        return None

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        with contextlib.suppress(InvalidSessionId):  # the store could never have held that key
            destroy_record(self.store, session_key, time.time())

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: a conforming store drops expired sessions itself (ttl.2)."""
