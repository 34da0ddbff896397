"""The probe as a plain WSGI app under :class:`storekit.wsgi.SessionMiddleware`.

``make_app(store, secret=...)`` is the middleware itself; its options are the
middleware's, with ``max_age`` given as ``lifetime``. ``/end-group`` is the
middleware's :meth:`~storekit.wsgi.SessionMiddleware.end_group`; ``/outage``
works when ``store`` is an :class:`~storekit.probe.outage.OutageStore`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from storekit.codec import DEFAULT_MAX_SESSION_BYTES
from storekit.contract import Store
from storekit.probe.outage import OutageStore
from storekit.probe.protocol import PREFIX, ProbeError, Reply, answer_free, parse
from storekit.probe.routes import features_of, respond
from storekit.wsgi import SessionMiddleware, session_of

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["make_app"]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def answer(start_response: StartResponse, reply: Reply) -> list[bytes]:
    """``reply`` as a WSGI response."""
    status, body = reply
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
    return [data]


def make_app(
    store: Store,
    *,
    secret: str | bytes | list[str | bytes],
    lifetime: float | None = 3.0,
    prefix: str = PREFIX,
    max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES,
    **options: Any,
) -> SessionMiddleware:
    """The probe's routes under ``prefix``, in sessions of ``store``; ``max_session_bytes`` is
    the store's limit (the reference stores' default unless they were built with another)."""
    switch = store.outage if isinstance(store, OutageStore) else None

    def probe(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        try:
            call = parse(environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""), prefix=prefix)
            reply = answer_free(call, features, switch) or respond(
                call, session_of(environ), end_group=middleware.end_group
            )
        except ProbeError as exc:
            reply = exc.reply()
        return answer(start_response, reply)

    middleware = SessionMiddleware(probe, store, secret=secret, max_age=lifetime, **options)
    features = features_of(middleware.config, outage=switch is not None, max_session_bytes=max_session_bytes)
    return middleware
