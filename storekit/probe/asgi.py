"""The probe as a Starlette app under :class:`storekit.asgi.SessionMiddleware`, on an async store.

``make_app(store, secret=...)`` is the middleware around the Starlette app;
its options are the middleware's, with ``max_age`` given as ``lifetime``.
``/end-group`` is the middleware's ``aend_group``; ``/outage`` works when
``store`` is an :class:`~storekit.probe.outage.AsyncOutageStore`. A session
that cannot be loaded answers its status (503 in an outage) through a Starlette
exception handler: Starlette would otherwise turn it into a 500 of its own.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from storekit.asgi import SessionMiddleware, session_of
from storekit.codec import DEFAULT_MAX_SESSION_BYTES
from storekit.contract import AsyncStore
from storekit.probe.outage import AsyncOutageStore
from storekit.probe.protocol import PREFIX, ProbeError, answer_free, parse
from storekit.probe.routes import arespond, features_of
from storekit.session import SessionUnavailable

__all__ = ["make_app"]


def make_app(
    store: AsyncStore,
    *,
    secret: str | bytes | list[str | bytes],
    lifetime: float | None = 3.0,
    prefix: str = PREFIX,
    max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES,
    **options: Any,
) -> SessionMiddleware:
    """The probe's routes under ``prefix``, in sessions of ``store``; see :mod:`storekit.probe.wsgi`."""
    switch = store.outage if isinstance(store, AsyncOutageStore) else None

    async def probe(request: Request) -> Response:
        try:
            call = parse(request.method, request.url.path, request.url.query, prefix=prefix)
            reply = answer_free(call, features, switch) or await arespond(
                call, session_of(request.scope), end_group=middleware.aend_group
            )
        except ProbeError as exc:
            reply = exc.reply()
        status, body = reply
        return JSONResponse(body, status_code=status)

    async def unavailable(request: Request, exc: Exception) -> Response:
        status = exc.status if isinstance(exc, SessionUnavailable) else 500
        return JSONResponse({"error": "the session store is unavailable"}, status_code=status)

    app = Starlette(
        routes=[Route(prefix + "/{route:path}", probe, methods=["GET", "POST"])],
        exception_handlers={SessionUnavailable: unavailable},
    )
    middleware = SessionMiddleware(app, store, secret=secret, max_age=lifetime, **options)
    features = features_of(middleware.config, outage=switch is not None, max_session_bytes=max_session_bytes)
    return middleware
