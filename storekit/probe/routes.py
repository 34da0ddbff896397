"""What the session routes do to a storekit session: one meaning for the WSGI, Flask and ASGI
probes, sync (:func:`respond`) and async (:func:`arespond`).

``/read`` and ``/write`` load the session before they wait, so that a slow
request holds a loaded session while another request logs out; ``/login``
waits, then regenerates (a new sid, no data kept) and joins ``user:U``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from storekit.asession import AsyncSession
from storekit.groups import check_group_name
from storekit.options import SessionConfig
from storekit.probe.protocol import Call, Features, ProbeError, Reply
from storekit.session import Session

__all__ = ["arespond", "features_of", "group_of", "respond"]


def features_of(config: SessionConfig, *, outage: bool, max_session_bytes: int) -> Features:
    """What a probe under a storekit middleware with ``config`` declares: groups are offered."""
    return Features(
        cookie=config.cookie_name,
        lifetime=config.max_age,
        same_site=config.same_site,
        groups=True,
        outage=outage,
        max_session_bytes=max_session_bytes,
        secure=config.secure is True,
    )


def group_of(user: str) -> str:
    """The group a login of ``user`` joins; a 400 for a user no group can be named after."""
    try:
        return check_group_name(f"user:{user}")
    except ValueError as exc:
        raise ProbeError(400, f"user={user!r} names no group: {exc}") from None


def respond(call: Call, session: Session, *, end_group: Callable[[str], int]) -> Reply:
    """The reply to a session route, after doing to ``session`` what the route says."""
    if call.route == "read":
        data = dict(session)
        time.sleep(call.delay)
        return 200, {"data": data}
    if call.route == "write":
        session.get("user")
        time.sleep(call.delay)
        session[call.key] = call.value
        return 200, {"data": dict(session)}
    if call.route == "login":
        group = group_of(call.user)
        time.sleep(call.delay)
        session.regenerate()
        session["user"] = call.user
        session.join_group(group)
        return 200, {"data": dict(session)}
    if call.route == "logout":
        session.destroy()
        return 200, {"data": {}}
    if call.route == "end-group":
        return 200, {"ended": end_group(group_of(call.user))}
    raise AssertionError(f"not a session route: {call.route!r}")


async def arespond(call: Call, session: AsyncSession, *, end_group: Callable[[str], Awaitable[int]]) -> Reply:
    """:func:`respond` with the session's coroutines, waiting without blocking the loop."""
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
        group = group_of(call.user)
        await asyncio.sleep(call.delay)
        await session.aregenerate()
        session["user"] = call.user
        session.join_group(group)
        return 200, {"data": dict(session)}
    if call.route == "logout":
        await session.adestroy()
        return 200, {"data": {}}
    if call.route == "end-group":
        return 200, {"ended": await end_group(group_of(call.user))}
    raise AssertionError(f"not a session route: {call.route!r}")
