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
``clear_expired()`` has nothing to do. Django's semantics are kept:
``load()`` never creates anything, ``save(must_create=True)`` raises
CreateError for a key that exists, ``save()`` raises UpdateError when the
session has vanished (a logout in another request is never undone), and a
key the store refuses is treated as no session at all.
"""

from __future__ import annotations

import contextlib
import os
import pkgutil
import threading
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.core.exceptions import ImproperlyConfigured

from storekit.codec import format_expires
from storekit.errors import InvalidSessionId, cut

__all__ = ["SETTING", "SessionStore", "get_store"]

SETTING = "STOREKIT_SESSION_STORE"
"""The setting that names the store, as ``"module:attribute"``."""

_lock = threading.Lock()
_stores: dict[tuple[int, str], Any] = {}


def _build(spec: str) -> Any:
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ImproperlyConfigured(
            f"{SETTING} must be 'module:attribute', got {spec!r} "
            "(for example 'storekit.reference:MemoryStore')"
        )
    try:
        found = pkgutil.resolve_name(spec)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"{SETTING} = {spec!r} does not resolve ({type(exc).__name__}: {exc}); "
            "check the module path and the attribute name"
        ) from None
    from storekit.target import Target

    if isinstance(found, Target):
        found = found.factory
    if not _is_store(found) and callable(found):
        found = found()
    if not _is_store(found):
        raise ImproperlyConfigured(
            f"{SETTING} = {spec!r} gave {cut(found)}, which is not a store: a store has get, set "
            "and destroy methods; name a store, a callable returning one, or a storekit.Target"
        )
    if any(_is_coroutine(getattr(found, name)) for name in ("get", "set", "destroy")):
        raise ImproperlyConfigured(
            f"{SETTING} = {spec!r} is an async store; Django's session engine API is sync, "
            "so name a sync store"
        )
    return found


def _is_store(obj: object) -> bool:
    return not isinstance(obj, type) and all(
        callable(getattr(obj, n, None)) for n in ("get", "set", "destroy")
    )


def _is_coroutine(function: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(function)


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


class SessionStore(SessionBase):  # type: ignore[misc]  # Django ships no type hints
    """Django's ``SessionStore`` for ``SESSION_ENGINE = "storekit.django"``."""

    @property
    def store(self) -> Any:
        return get_store()

    def _record(self, data: dict[str, Any]) -> dict[str, Any]:
        if "cookie" in data:
            raise ValueError(
                "the session key 'cookie' is reserved by storekit for the session's expiry; "
                "store that value under another key"
            )
        expires = self.get_expiry_date().timestamp()
        cookie = {
            "originalMaxAge": self.get_expiry_age() * 1000,
            "expires": format_expires(expires),
            "httpOnly": settings.SESSION_COOKIE_HTTPONLY,
            "path": settings.SESSION_COOKIE_PATH,
        }
        return {**data, "cookie": cookie}

    def _fetch(self, key: str | None) -> dict[str, Any] | None:
        if key is None:
            return None
        try:
            record: dict[str, Any] | None = self.store.get(key)
        except InvalidSessionId:
            return None  # a key from a cookie that the store cannot hold: no session
        return record

    def load(self) -> dict[str, Any]:
        record = self._fetch(self.session_key)
        if record is None:
            self._session_key = None
            return {}
        return {key: value for key, value in record.items() if key != "cookie"}

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
        exists = self.exists(self.session_key)
        if must_create and exists:
            raise CreateError
        if not must_create and not exists:
            raise UpdateError
        data = self._get_session(no_load=must_create)
        self.store.set(self.session_key, self._record(data))
        return None

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        with contextlib.suppress(InvalidSessionId):  # the store could never have held that key
            self.store.destroy(session_key)

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: a conforming store drops expired sessions itself (ttl.2)."""
