"""Server-side Flask sessions in any conforming store: the Flask shell over :mod:`storekit.session`.

    from storekit.flask import StoreSessionInterface
    from storekit.reference import MemoryStore

    app.secret_key = "..."
    app.session_interface = StoreSessionInterface(MemoryStore())

The browser holds only the session ID, signed with the app's ``secret_key``
(and verified with ``SECRET_KEY_FALLBACKS`` too, for rotation) in
express-session's format (``s:<sid>.<signature>``); the data lives in the
store. Every decision (load, change detection, save, touch or skip, the
cookie, ``Vary``) is the core's, as under the WSGI middleware; this module
only maps Flask's configuration onto the core's options and Flask's request
and response onto its calls:

* ``PERMANENT_SESSION_LIFETIME`` is ``max_age``: the store expires the
  session that long after the last request. A permanent session's cookie
  carries the same expiry; any other is a browser-session cookie.
* ``SESSION_REFRESH_EACH_REQUEST`` is ``rolling`` for permanent sessions, and
  lets an unchanged session be touched (or written again, for a store without
  ``touch``) so that its stored expiry moves on.
* ``SESSION_COOKIE_NAME``, ``_DOMAIN``, ``_PATH``, ``_HTTPONLY``, ``_SECURE``,
  ``_SAMESITE`` and ``_PARTITIONED`` are the cookie's flags.

What Flask's own session does, this one does too: values that Flask's tagged
JSON round-trips (tuple, bytes, Markup, UUID, datetime, and dicts whose one
key looks like a tag) come back as they went in, stored as the JSON that
``flask.json.tag.TaggedJSONSerializer`` makes of them (plain JSON values are
stored as they are); ``session.clear()`` ends the session (the record is
destroyed and the cookie deleted); ``accessed`` is set only when the view used
the session. ``session.regenerate()`` drops the data, as under WSGI, unless
``keep_data=True``; call it at login (it is what stops fixation).

As in every shell, the session is loaded when the view first uses it: during
a store outage such a view gets a 503 (:class:`UnavailableSession`, a
werkzeug ``HTTPException``; 500 for a record that is not a session) and one
log line, while a view that never uses the session is served. A slow request
never writes back a session cleared meanwhile (the core's live write).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SessionInterface, SessionMixin, session_json_serializer
from werkzeug.exceptions import HTTPException

from storekit.contract import Store, SupportsTouch, check_store
from storekit.cookie import generate_sid
from storekit.options import SessionConfig
from storekit.request import end_request, open_session
from storekit.session import Session, SessionUnavailable

if TYPE_CHECKING:
    from flask import Flask
    from flask.wrappers import Request, Response

__all__ = ["StoreSession", "StoreSessionInterface", "UnavailableSession"]


class UnavailableSession(SessionUnavailable, HTTPException):
    """:class:`storekit.session.SessionUnavailable` as Flask answers it: an HTTP error whose
    code is the core's status (503 for an outage, 500 otherwise), with a body that names no
    store, sid or error (the log line, written where the load failed, has them)."""

    def __init__(self, message: str, sid: str, status: int) -> None:
        super().__init__(message, sid, status)
        self.code = status
        self.description = "The session store is unavailable; try again shortly."
        self.message = message

    def __str__(self) -> str:
        return self.message


def _codec(serializer: TaggedJSONSerializer) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """A value to JSON and back through ``serializer``'s tags: what its ``dumps`` and ``loads``
    do, without the JSON text (the store encodes that)."""

    def tag(value: Any) -> Any:
        return serializer.tag(value)

    def untag(value: Any) -> Any:
        if isinstance(value, dict):
            return serializer.untag({key: untag(item) for key, item in value.items()})
        if isinstance(value, list):
            return [untag(item) for item in value]
        return value

    return tag, untag


_tag, _untag = _codec(session_json_serializer)


class StoreSession(Session, SessionMixin):
    """A Flask session kept in a store: the core's :class:`storekit.session.Session` with
    Flask's flags (``new``, ``modified``, ``permanent``, ``accessed``).

    Changes are found at the end of the request by comparing the data with what
    was loaded, nested ones included, so ``session.modified = True`` is never
    needed (it still forces a save).
    """

    encode = staticmethod(_tag)
    decode = staticmethod(_untag)
    unavailable = UnavailableSession
    had_cookie = False

    @property
    def sid(self) -> str:
        """The session ID (the same as ``id``)."""
        return self.id

    @property
    def new(self) -> bool:  # type: ignore[override]  # a flag in Flask's mixin, a constructor in the core
        """True unless this session was loaded under the sid the request's cookie named."""
        self._ensure(quiet=True)  # a flag, as in Flask: reading it is not using the session
        return self.is_new

    @property
    def modified(self) -> bool:
        """Whether the session will be saved: its data changed, or ``modified = True`` was set."""
        self._ensure(quiet=True)  # a flag, as in Flask: reading it is not using the session
        return self.is_modified()

    @modified.setter
    def modified(self, value: bool) -> None:
        if value:
            self.mark_modified()

    @property
    def permanent(self) -> bool:
        """Flask's ``session.permanent``, kept under ``_permanent`` as Flask keeps it."""
        return bool(self.peek("_permanent", False))

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self["_permanent"] = bool(value)


class StoreSessionInterface(SessionInterface):
    """A Flask ``SessionInterface`` over ``store``, any conforming sync store.

    ``genid`` makes new sids (24 random bytes, URL-safe base64, by default) and
    ``clock`` gives POSIX seconds; both can be replaced in tests.
    ``serializer`` is Flask's own tagged-JSON serializer: register a tag on it
    as on Flask's cookie session.
    """

    session_class = StoreSession
    serializer: TaggedJSONSerializer = session_json_serializer

    def __init__(
        self,
        store: Store,
        *,
        genid: Callable[[], str] = generate_sid,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = check_store(store, "Flask", kind="sync")
        if self.serializer is not session_json_serializer:  # a subclass brought its own tags
            tag, untag = _codec(self.serializer)
            name = self.session_class.__name__
            extra = {"encode": staticmethod(tag), "decode": staticmethod(untag)}
            self.session_class = cast("type[StoreSession]", type(name, (self.session_class,), extra))
        self.can_touch = isinstance(store, SupportsTouch)
        self.genid = genid
        self.clock = clock
        self._configs: dict[tuple[Any, ...], SessionConfig] = {}

    def session_config(self, app: Flask) -> SessionConfig | None:
        """The core's options for ``app``'s configuration, or None without a secret key."""
        if not app.secret_key:
            return None
        refresh = bool(app.config.get("SESSION_REFRESH_EACH_REQUEST", True))
        key = (
            app.secret_key,
            tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()),
            self.get_cookie_name(app),
            app.permanent_session_lifetime.total_seconds(),
            refresh,
            self.get_cookie_httponly(app),
            self.get_cookie_secure(app),
            self.get_cookie_samesite(app),
            self.get_cookie_path(app),
            self.get_cookie_domain(app),
            self.get_cookie_partitioned(app),
        )
        config = self._configs.get(key)
        if config is None:
            secret, fallbacks, name, lifetime, refresh, http_only, secure, same_site, path, domain, part = key
            config = SessionConfig(
                secret=[secret, *fallbacks],
                cookie_name=name,
                max_age=lifetime,
                rolling=refresh,  # for permanent sessions only: the others' cookie has no expiry
                resave=refresh and not self.can_touch,
                http_only=http_only,
                secure=secure,
                same_site=same_site,
                path=path,
                domain=domain,
                partitioned=part,
                clock=self.clock,
                genid=self.genid,
            )
            self._configs = {key: config}  # one app's configuration at a time
        return config

    def open_session(self, app: Flask, request: Request) -> StoreSession | None:
        config = self.session_config(app)
        if config is None:
            return None  # Flask's NullSession says to set a secret key
        session, had_cookie = open_session(
            config,
            self.store,
            request.headers.get("Cookie"),
            session_class=self.session_class,
            request_secure=request.is_secure,
            can_touch=bool(app.config.get("SESSION_REFRESH_EACH_REQUEST", True)),
        )
        assert isinstance(session, StoreSession)
        session.had_cookie = had_cookie
        session.request_secure = request.is_secure
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, StoreSession):
            raise TypeError(f"StoreSessionInterface cannot save {session!r}, which it did not open")
        if session.needed_at_end():
            ended = session.is_empty() and session.is_modified() and not session.destroyed
            if ended and response.status_code < 500:
                session.destroy()  # Flask: a session emptied by the view ends, and its cookie goes
            session.cookie.persistent = session.permanent
        plan = end_request(
            session,
            self.store,
            status=response.status_code,
            request_secure=session.request_secure,
            had_cookie=session.had_cookie,
            can_touch=bool(app.config.get("SESSION_REFRESH_EACH_REQUEST", True)),
        )
        if plan.set_cookie is not None:
            response.headers.add("Set-Cookie", plan.set_cookie)
        if plan.vary:
            response.vary.add("Cookie")
