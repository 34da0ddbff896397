"""SessionMiddleware: the WSGI shell over :mod:`storekit.session`.

It reads the cookie, puts the session into ``environ["storekit.session"]``
(:func:`storekit.request.open_session`; it is loaded from the store when the
app first uses it), runs the app, and before the response's headers go out (so
before the client can see any of it, and so before it can send its next
request) saves, touches or destroys as the core decides
(:func:`storekit.request.end_request`), then adds the headers the plan names.
A store that fails to load a session the app uses gives a 503 (500 for a
record that is not a session) and one log line on the ``storekit.session``
logger, never a silently empty session; a request that never uses the session
is not affected. A failed save gives a 500. Nothing is saved when the app
raises or answers 5xx.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from storekit import groups as _groups
from storekit.contract import Store
from storekit.lifecycle import vary_cookie
from storekit.live import destroy_record
from storekit.options import request_is_secure
from storekit.request import end_request, open_session
from storekit.session import Session, SessionUnavailable
from storekit.shell import SessionShell

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment  # noqa: F401 (base class)

__all__ = ["ENVIRON_KEY", "SessionMiddleware", "session_of"]

ENVIRON_KEY = "storekit.session"
"""Where the session is in the WSGI environ."""

log = logging.getLogger("storekit.session")

_REASONS = {500: "Internal Server Error", 503: "Service Unavailable"}


def session_of(environ: WSGIEnvironment) -> Session:
    """The session of this request, or a KeyError that says how to get one."""
    try:
        session: Session = environ[ENVIRON_KEY]
    except KeyError:
        raise KeyError(
            f"no session in environ[{ENVIRON_KEY!r}]: wrap the app in storekit.wsgi.SessionMiddleware "
            "(and check that the request path is under the cookie's path)"
        ) from None
    return session


def _short(sid: str) -> str:
    """A sid is a bearer token: logs get its first characters only."""
    return sid[:6] + "..."


class SessionMiddleware(SessionShell["WSGIApplication", Store]):
    """Sessions in any conforming (sync) store for a WSGI app.

    ``SessionMiddleware(app, store, secret="...")``; the other options are
    those of :class:`storekit.options.SessionConfig`; ``clock`` (POSIX
    seconds) and ``genid`` (new sids) can be replaced, e.g. in tests.
    """

    user = "SessionMiddleware (WSGI)"
    kind = "sync"

    def end_group(self, name: str) -> int:
        """End every session of group ``name`` ("log out everywhere"); returns how many it held."""
        store, clock = self.store, self.config.clock
        return len(_groups.end_group(store, name, destroy=lambda sid: destroy_record(store, sid, clock())))

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        if not (path or "/").startswith(self.config.path):
            return self.app(environ, start_response)  # express-session: no session outside the path
        secure = request_is_secure(
            environ.get("wsgi.url_scheme", "http"),
            environ.get("HTTP_X_FORWARDED_PROTO"),
            trust_proxy=self.config.trust_proxy,
        )
        session, had_cookie = open_session(
            self.config, self.store, environ.get("HTTP_COOKIE"), request_secure=secure
        )
        environ[ENVIRON_KEY] = session
        session.request_secure = secure
        return _Exchange(self, session, secure, had_cookie, start_response).run(environ)


def _error(
    start_response: StartResponse, exc_info: OptExcInfo | None = None, status: int = 500
) -> list[bytes]:
    reason = _REASONS[status]
    body = f"{reason}\n".encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response(f"{status} {reason}", headers, exc_info)
    return [body]


def _add_vary(headers: list[tuple[str, str]]) -> None:
    for index, (name, value) in enumerate(headers):
        if name.lower() == "vary":
            headers[index] = (name, vary_cookie(value))
            return
    headers.append(("Vary", "Cookie"))


class _Exchange:
    """One request: holds the app's status and headers until the session is committed."""

    def __init__(
        self,
        middleware: SessionMiddleware,
        session: Session,
        secure: bool,
        had_cookie: bool,
        start_response: StartResponse,
    ) -> None:
        self.middleware = middleware
        self.session = session
        self.secure = secure
        self.had_cookie = had_cookie
        self.server_start_response = start_response
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.server_write: Any = None
        self.committed = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Any:
        if exc_info is not None and exc_info[1] is not None and self.committed:
            raise exc_info[1].with_traceback(exc_info[2])  # PEP 3333: too late to change the headers
        self.status, self.headers = status, list(headers)
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable: commits first, so the save still precedes the body."""
        if not self.committed:
            try:
                self.commit()
            except Exception:
                log.exception("storekit: could not save session %s before write()", _short(self.session.id))
                raise
        self.server_write(data)

    def commit(self) -> None:
        """Save/touch as the core decides, then send the headers. Raises what the store raised."""
        if self.status is None:
            raise RuntimeError("the WSGI app returned without calling start_response()")
        self.committed = True
        plan = end_request(
            self.session,
            self.middleware.store,
            status=int(self.status.split(" ", 1)[0]),
            request_secure=self.secure,
            had_cookie=self.had_cookie,
        )
        headers = self.headers
        if plan.set_cookie is not None:
            headers.append(("Set-Cookie", plan.set_cookie))
        if plan.vary:
            _add_vary(headers)
        self.server_write = self.server_start_response(self.status, headers)

    def run(self, environ: WSGIEnvironment) -> Iterable[bytes]:
        try:
            result = self.middleware.app(environ, self.start_response)  # raises: nothing is saved
        except SessionUnavailable as exc:
            return self.unavailable(exc)
        chunks = iter(result)
        head: list[bytes] = []
        try:
            if not self.committed:
                for chunk in chunks:  # a generator app may call start_response on its first step
                    head.append(chunk)
                    if chunk:
                        break
            if not self.committed:
                self.commit()
        except SessionUnavailable as exc:
            _close(result)
            if self.committed:
                raise
            return self.unavailable(exc)
        except Exception:
            _close(result)
            if self.committed and self.server_write is None:  # the store failed: headers not sent
                log.exception(
                    "storekit: could not save session %s to %r; answering 500 instead of %r",
                    _short(self.session.id),
                    self.middleware.store,
                    self.status,
                )
                return _error(self.server_start_response, sys.exc_info())
            raise
        return _Body(head, chunks, result)

    def unavailable(self, exc: SessionUnavailable) -> list[bytes]:
        """The app let the session's failed load through: its status (logged where it failed)."""
        if self.committed:
            raise exc
        self.committed = True
        return _error(self.server_start_response, sys.exc_info(), exc.status)


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


class _Body:
    """The response body: the chunks read before the commit, then the rest, with close()."""

    def __init__(self, head: list[bytes], rest: Iterator[bytes], result: Iterable[bytes]) -> None:
        self.head = head
        self.rest = rest
        self.result = result

    def __iter__(self) -> Iterator[bytes]:
        yield from self.head
        self.head = []
        yield from self.rest

    def close(self) -> None:
        _close(self.result)
