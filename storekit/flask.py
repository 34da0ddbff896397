"""Server-side Flask sessions in any conforming store.

    from storekit.flask import StoreSessionInterface
    from storekit.reference import MemoryStore

    app.secret_key = "..."
    app.session_interface = StoreSessionInterface(MemoryStore())

The browser holds only the session ID, signed with the app's ``secret_key``
(and verified with ``SECRET_KEY_FALLBACKS`` too, for rotation) in
express-session's format (``s:<sid>.<signature>``); the data lives in the
store, with its expiry in ``session["cookie"]["expires"]`` so that the store
drops it: ``PERMANENT_SESSION_LIFETIME`` from the last write, renewed on each
request by ``touch`` when ``SESSION_REFRESH_EACH_REQUEST`` is on and the store
offers it. A permanent session's cookie carries the same expiry; any other is a
browser-session cookie. The other cookie settings are Flask's own
(``SESSION_COOKIE_NAME``, ``_DOMAIN``, ``_PATH``, ``_HTTPONLY``, ``_SECURE``,
``_SAMESITE``, ``_PARTITIONED``).

An unknown or forged sid is never adopted: the request gets a fresh session
and a fresh sid. ``session.regenerate()`` gives the session a new sid and
destroys the old record at the end of the request: call it at login. An empty
session that nobody wrote to is neither saved nor sent; ``session.clear()``
destroys the stored session and deletes the cookie. Responses vary on
``Cookie`` whenever the session was read. Nothing is saved for a 5xx response.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from storekit.codec import check_sid, format_expires
from storekit.contract import Store, SupportsTouch, check_store
from storekit.cookie import check_secrets, cookie_values, generate_sid, sign, signed_sids

if TYPE_CHECKING:
    from flask import Flask
    from flask.wrappers import Request, Response

__all__ = ["StoreSession", "StoreSessionInterface"]

_URI_SAFE = "-_.!~*'()"  # what encodeURIComponent leaves alone, as express-session sends the cookie


def _fingerprint(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, default=repr)


class StoreSession(CallbackDict[str, Any], SessionMixin):
    """A Flask session kept in a store: a dict with a ``sid``.

    Changes are found at the end of the request by comparing the data with what
    was loaded, nested ones included, so ``session.modified = True`` is never
    needed (it still forces a save).
    """

    def __init__(self, data: dict[str, Any] | None, sid: str, *, new: bool, cookie_sid: str | None) -> None:
        def on_update(self: StoreSession) -> None:
            self.modified = True

        super().__init__(data, on_update)
        self.sid = sid
        self.new = new
        self.cookie_sid = cookie_sid
        self.modified = False
        self.replaced: list[str] = []
        self._loaded = _fingerprint(dict(self))

    # Flask 3.1.3 marks the session accessed in the request context; earlier versions
    # leave it to the session class, as SecureCookieSession did.
    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        return super().get(key, default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        return super().setdefault(key, default)

    def regenerate(self, genid: Callable[[], str] = generate_sid) -> None:
        """Give the session a new sid, keeping its data; the old record is destroyed
        when the response is saved. Do this when privileges change (login), against fixation."""
        if not self.new:
            self.replaced.append(self.sid)
        self.sid = check_sid(genid())
        self.new = True
        self.modified = True

    def is_modified(self) -> bool:
        """Whether the data differs from what was loaded, or ``modified`` was set."""
        return self.modified or _fingerprint(dict(self)) != self._loaded

    def __repr__(self) -> str:
        return f"<StoreSession {self.sid[:6]}... keys={sorted(self)!r}>"


class StoreSessionInterface(SessionInterface):
    """A Flask ``SessionInterface`` over ``store``, any conforming sync store.

    ``genid`` makes new sids (24 random bytes, URL-safe base64, by default) and
    ``clock`` gives POSIX seconds; both can be replaced in tests.
    """

    session_class = StoreSession

    def __init__(
        self,
        store: Store,
        *,
        genid: Callable[[], str] = generate_sid,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = check_store(store, "Flask", kind="sync")
        self.toucher: SupportsTouch | None = store if isinstance(store, SupportsTouch) else None
        self.genid = genid
        self.clock = clock

    def _keys(self, app: Flask) -> tuple[bytes, ...] | None:
        if not app.secret_key:
            return None
        fallbacks = app.config.get("SECRET_KEY_FALLBACKS") or []
        return check_secrets([app.secret_key, *fallbacks])

    def open_session(self, app: Flask, request: Request) -> StoreSession | None:
        keys = self._keys(app)
        if keys is None:
            return None  # Flask's NullSession says to set a secret key
        for sid in signed_sids(cookie_values(request.headers.get("Cookie"), self.get_cookie_name(app)), keys):
            record = self.store.get(sid)
            if record is None:  # expired or destroyed: never adopt the client's sid
                return self.session_class(None, check_sid(self.genid()), new=True, cookie_sid=sid)
            data = {key: item for key, item in record.items() if key != "cookie"}
            return self.session_class(data, sid, new=False, cookie_sid=sid)
        return self.session_class(None, check_sid(self.genid()), new=True, cookie_sid=None)

    def _record(self, app: Flask, session: StoreSession, expires: float) -> dict[str, Any]:
        cookie = {
            "originalMaxAge": round(app.permanent_session_lifetime.total_seconds() * 1000),
            "expires": format_expires(expires),
            "secure": self.get_cookie_secure(app),
            "httpOnly": self.get_cookie_httponly(app),
            "domain": self.get_cookie_domain(app),
            "path": self.get_cookie_path(app),
            "sameSite": self.get_cookie_samesite(app),
        }
        return {**dict(session), "cookie": cookie}

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, StoreSession):
            raise TypeError(f"StoreSessionInterface cannot save {session!r}, which it did not open")
        if session.accessed:
            response.vary.add("Cookie")
        if response.status_code >= 500:
            return
        for old in session.replaced:
            self.store.destroy(old)
        session.replaced = []
        if not session:
            if session.is_modified() or (session.cookie_sid is not None and session.new):
                if not session.new:
                    self.store.destroy(session.sid)
                if session.cookie_sid is not None:
                    self._delete_cookie(app, response)
            return
        expires = self.clock() + app.permanent_session_lifetime.total_seconds()
        refresh = bool(app.config.get("SESSION_REFRESH_EACH_REQUEST", True))
        if session.new or session.is_modified() or (session.permanent and refresh):
            self.store.set(session.sid, self._record(app, session, expires))
            self._set_cookie(app, session, response)
        elif refresh and self.toucher is not None:
            self.toucher.touch(session.sid, self._record(app, session, expires))

    def _set_cookie(self, app: Flask, session: StoreSession, response: Response) -> None:
        keys = self._keys(app)
        assert keys is not None  # open_session returned a NullSession otherwise
        response.set_cookie(
            self.get_cookie_name(app),
            quote(sign(session.sid, keys[0]), safe=_URI_SAFE),
            expires=self.get_expiration_time(app, session),
            httponly=self.get_cookie_httponly(app),
            domain=self.get_cookie_domain(app),
            path=self.get_cookie_path(app),
            secure=self.get_cookie_secure(app),
            partitioned=self.get_cookie_partitioned(app),
            samesite=self.get_cookie_samesite(app),
        )
        response.vary.add("Cookie")

    def _delete_cookie(self, app: Flask, response: Response) -> None:
        response.delete_cookie(
            self.get_cookie_name(app),
            domain=self.get_cookie_domain(app),
            path=self.get_cookie_path(app),
            secure=self.get_cookie_secure(app),
            partitioned=self.get_cookie_partitioned(app),
            samesite=self.get_cookie_samesite(app),
            httponly=self.get_cookie_httponly(app),
        )
        response.vary.add("Cookie")
