"""SessionMiddleware: the ASGI shell over :mod:`storekit.session`, for any async store.

Pure ASGI (no framework import). For an ``http`` scope it reads the cookie,
loads the session into ``scope["session"]`` (:func:`storekit.arequest.open_session`),
where Starlette's and FastAPI's ``request.session`` find it, runs the app, and
holds the app's ``http.response.start`` until the session is saved, touched or
destroyed as the core decides (:func:`storekit.arequest.end_request`); the start
then goes out with the plan's headers, so the client cannot see the response,
or send its next request, before the store holds the session. A store that
fails to load the session fails only a request whose app uses it: a 503 (500
for a record that is not a session) and one log line on the ``storekit.session``
logger, never a silently empty session. A failed save gives a 500. Nothing is
saved when the app raises or answers 5xx.

A ``websocket`` scope gets the read-only :class:`~storekit.asession.WebSocketSession`
of its handshake's cookie. Other scopes (``lifespan``) pass through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from storekit import agroups
from storekit.arequest import end_request, open_session, undo_renew
from storekit.asession import AsyncSession, WebSocketSession
from storekit.contract import AsyncStore
from storekit.lifecycle import vary_cookie
from storekit.live import adestroy_record
from storekit.options import request_is_secure
from storekit.session import SessionUnavailable
from storekit.shell import SessionShell

__all__ = ["SCOPE_KEY", "SessionMiddleware", "session_of"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_KEY = "session"
"""Where the session is in the ASGI scope (where Starlette's ``request.session`` reads it)."""

log = logging.getLogger("storekit.session")

_REASONS = {500: b"Internal Server Error\n", 503: b"Service Unavailable\n"}


def _error_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]


def session_of(scope: Scope) -> AsyncSession:
    """The session of this request, or a KeyError that says how to get one."""
    session = scope.get(SCOPE_KEY)
    if not isinstance(session, AsyncSession):
        raise KeyError(
            f"no storekit session in scope[{SCOPE_KEY!r}] (found {type(session).__name__}): wrap the app "
            "in storekit.asgi.SessionMiddleware (and check that the path is under the cookie's path)"
        )
    return session


def _short(sid: str) -> str:
    """A sid is a bearer token: logs get its first characters only."""
    return sid[:6] + "..."


class SessionMiddleware(SessionShell[ASGIApp, AsyncStore]):
    """Sessions in any conforming async store for an ASGI app.

    ``SessionMiddleware(app, store, secret="...")``, or with Starlette and
    FastAPI ``app.add_middleware(SessionMiddleware, store=store, secret="...")``;
    the other options are those of the WSGI middleware
    (:class:`storekit.options.SessionConfig`), and the cookie is the same.
    """

    user = "storekit.asgi.SessionMiddleware"
    kind = "async"

    async def aend_group(self, name: str) -> int:
        """End every session of group ``name`` ("log out everywhere"); returns how many it held."""
        store, clock = self.store, self.config.clock
        ended = await agroups.end_group(store, name, destroy=lambda sid: adestroy_record(store, sid, clock()))
        return len(ended)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or not _full_path(scope).startswith(self.config.path):
            await self.app(scope, receive, send)  # lifespan; or outside the cookie's path (express-session)
            return
        headers = _Headers(scope)
        scheme = "https" if str(scope.get("scheme", "http")).lower() in ("https", "wss") else "http"
        secure = request_is_secure(
            scheme, headers.first(b"x-forwarded-proto"), trust_proxy=self.config.trust_proxy
        )
        session_class = AsyncSession if kind == "http" else WebSocketSession
        session, had_cookie = await open_session(
            self.config,
            self.store,
            headers.cookie(),
            session_class=session_class,
            request_secure=secure,
            can_touch=kind == "http",  # a websocket's session is not touched at its end
        )
        session.request_secure = secure
        scope = {**scope, SCOPE_KEY: session}  # a copy: the server's scope stays as it was
        if kind == "websocket":
            await self._websocket(session, scope, receive, send)
        else:
            await _Exchange(self, session, secure, had_cookie, send).run(scope, receive)

    async def _websocket(self, session: AsyncSession, scope: Scope, receive: Receive, send: Send) -> None:
        sent: set[str] = set()

        async def watch(message: Message) -> None:
            sent.add(message["type"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except SessionUnavailable as exc:  # the load failed (logged where it did)
            if "websocket.close" in sent or "websocket.http.response.start" in sent:
                raise
            if "websocket.accept" in sent:
                await send({"type": "websocket.close", "code": 1011})
            else:
                await _websocket_error(scope, send, exc.status)
        finally:
            if session.loaded and session.is_modified() and not session.destroyed:
                log.warning(
                    "storekit: a websocket changed session %s in place; a websocket's session is "
                    "read-only and the change was not saved (change it in an HTTP request)",
                    _short(session.id),
                )


def _full_path(scope: Scope) -> str:
    """The request's path from the site's root: ``path`` holds ``root_path`` in current
    ASGI servers; older ones send it apart."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    return (path if path.startswith(root) else root + path) or "/"


class _Headers:
    """The request headers of a scope, as the core wants them."""

    def __init__(self, scope: Scope) -> None:
        self.pairs: list[tuple[bytes, bytes]] = [
            (bytes(k).lower(), bytes(v)) for k, v in scope.get("headers", ())
        ]

    def first(self, name: bytes) -> str | None:
        return next((value.decode("latin-1") for key, value in self.pairs if key == name), None)

    def cookie(self) -> str | None:
        """Every ``Cookie`` header joined (HTTP/2 sends one per cookie), or None."""
        found = [value.decode("latin-1") for key, value in self.pairs if key == b"cookie"]
        return "; ".join(found) if found else None


class _SaveFailed(Exception):
    """Raised into the app from ``send`` once the 500 has replaced its response, so it stops."""


class _Exchange:
    """One HTTP request: holds the app's ``http.response.start`` until the session is committed."""

    def __init__(
        self, middleware: SessionMiddleware, session: AsyncSession, secure: bool, had_cookie: bool, send: Send
    ) -> None:
        self.middleware = middleware
        self.session = session
        self.secure = secure
        self.had_cookie = had_cookie
        self.server_send = send
        self.started = False
        self.failed = False

    async def run(self, scope: Scope, receive: Receive) -> None:
        try:
            await self._run(scope, receive)
        except BaseException:
            if not self.started:  # nothing is saved; the renew at load is undone
                await self.undo_renew()
            raise

    async def undo_renew(self) -> None:
        try:
            await undo_renew(self.session, self.middleware.store)
        except Exception:  # the app's exception is the one to see
            log.exception("storekit: could not give session %s its own cookie back", _short(self.session.id))

    async def _run(self, scope: Scope, receive: Receive) -> None:
        try:
            await self.middleware.app(scope, receive, self.send)  # raises before start: nothing is saved
        except SessionUnavailable as exc:
            if self.started or self.failed:
                raise
            self.failed = True  # the load failed (logged where it did) and the app let it through
            await _http_error(self.server_send, exc.status)
        except Exception:
            if not self.failed:
                raise
            # the store failed and a 500 went out instead; what the app raised is the consequence

    async def send(self, message: Message) -> None:
        if self.failed:
            raise _SaveFailed("the response was replaced by a 500: the session could not be saved")
        if message["type"] == "http.response.start" and not self.started:
            self.started = True
            message = await self.commit(message)
        await self.server_send(message)

    async def commit(self, start: Message) -> Message:
        """Save/touch as the core decides; the start message with the plan's headers.
        On a store error, sends a 500 instead and raises into the app."""
        status = int(start["status"])
        try:
            plan = await end_request(
                self.session,
                self.middleware.store,
                status=status,
                request_secure=self.secure,
                had_cookie=self.had_cookie,
            )
        except Exception:
            log.exception(
                "storekit: could not save session %s to %r; answering 500 instead of %d",
                _short(self.session.id),
                self.middleware.store,
                status,
            )
            self.failed = True
            await _http_error(self.server_send)
            raise _SaveFailed("the session could not be saved; a 500 went out instead") from None
        headers = [(bytes(k), bytes(v)) for k, v in start.get("headers", ())]
        if plan.set_cookie is not None:
            headers.append((b"set-cookie", plan.set_cookie.encode("latin-1")))
        if plan.vary:
            _add_vary(headers)
        return {**start, "headers": headers}


def _add_vary(headers: list[tuple[bytes, bytes]]) -> None:
    for index, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            headers[index] = (name, vary_cookie(value.decode("latin-1")).encode("latin-1"))
            return
    headers.append((b"vary", b"Cookie"))


async def _http_error(send: Send, status: int = 500) -> None:
    body = _REASONS[status]
    await send({"type": "http.response.start", "status": status, "headers": _error_headers(body)})
    await send({"type": "http.response.body", "body": body})


async def _websocket_error(scope: Scope, send: Send, status: int) -> None:
    """Refuse the handshake: ``status`` where the server offers the denial response, else close
    1011 (which a server turns into a 403 before the socket is accepted)."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        body = _REASONS[status]
        start = {"type": "websocket.http.response.start", "status": status, "headers": _error_headers(body)}
        await send(start)
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1011})
