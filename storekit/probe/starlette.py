"""The probe on Starlette's own ``SessionMiddleware``, for comparison: no storekit inside.

Starlette keeps the whole session in a signed cookie, so there is no store:
no groups, no outage, and a logout (``session.clear()``) cannot stop the old
cookie from being sent again, still valid, until ``max_age`` runs out.
Starlette sets no size limit of its own; ``max_session_bytes`` is the
4096 bytes a browser keeps of one cookie (RFC 6265, 6.1). The clauses this
probe fails, it fails by design. ``lifetime`` is Starlette's ``max_age``, in
whole seconds.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from storekit.probe.protocol import PREFIX, Call, Features, ProbeError, Reply, answer_free, not_offered, parse

__all__ = ["COOKIE_BYTES", "make_app"]

COOKIE_BYTES = 4096
"""What a browser keeps of one cookie, name and attributes included."""


async def _respond(call: Call, session: dict[str, Any]) -> Reply:
    if call.route == "read":
        data = dict(session)
        await asyncio.sleep(call.delay)
        return 200, {"data": data}
    if call.route == "write":
        session.get("user")
        await asyncio.sleep(call.delay)
        session[call.key] = call.value
        return 200, {"data": dict(session)}
    if call.route == "login":
        await asyncio.sleep(call.delay)
        session.clear()
        session["user"] = call.user
        return 200, {"data": dict(session)}
    if call.route == "logout":
        session.clear()
        return 200, {"data": {}}
    if call.route == "end-group":
        raise not_offered("end-group", "Starlette's cookie sessions have no groups")
    raise AssertionError(f"not a session route: {call.route!r}")


def make_app(
    *,
    secret: str,
    lifetime: float | None = 3.0,
    prefix: str = PREFIX,
    session_cookie: str = "session",
    same_site: Literal["lax", "strict", "none"] = "lax",
    https_only: bool = False,
) -> SessionMiddleware:
    """The probe's routes under ``prefix``, in Starlette's signed-cookie sessions."""
    max_age = None if lifetime is None else math.ceil(lifetime)
    features = Features(
        cookie=session_cookie,
        lifetime=max_age,
        same_site=same_site,
        groups=False,
        outage=False,
        max_session_bytes=COOKIE_BYTES,
        secure=https_only,
    )

    async def probe(request: Request) -> Response:
        try:
            call = parse(request.method, request.url.path, request.url.query, prefix=prefix)
            reply = answer_free(call, features, None) or await _respond(call, request.session)
        except ProbeError as exc:
            reply = exc.reply()
        status, body = reply
        return JSONResponse(body, status_code=status)

    app = Starlette(routes=[Route(prefix + "/{route:path}", probe, methods=["GET", "POST"])])
    return SessionMiddleware(
        app,
        secret_key=secret,
        session_cookie=session_cookie,
        max_age=max_age,
        same_site=same_site,
        https_only=https_only,
    )
