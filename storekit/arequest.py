"""The async I/O of one request, for the async shells (ASGI): open it, end it.

The awaited twin of :mod:`storekit.request`: the same questions to
:mod:`storekit.lifecycle`, the same store calls in the same order, each awaited
on an :class:`~storekit.contract.AsyncStore`. The shell then adds the returned
plan's headers to its response.
"""

from __future__ import annotations

from typing import cast

from storekit import agroups, lifecycle
from storekit.asession import AsyncSession, AsyncStoreHolder
from storekit.contract import AsyncStore, SupportsAsyncTouch
from storekit.lifecycle import Plan
from storekit.options import SessionConfig

__all__ = ["end_request", "open_session"]


async def open_session(
    config: SessionConfig,
    store: AsyncStore,
    cookie_header: str | None,
    *,
    session_class: type[AsyncSession] = AsyncSession,
) -> tuple[AsyncSession, bool]:
    """See :func:`storekit.request.open_session`; the session is a ``session_class``."""
    cookie_sid, had_cookie = lifecycle.verified_sid(cookie_header, config)
    holder = AsyncStoreHolder(store)
    # Session.fresh and from_record build cls(...), so they return a session_class
    if cookie_sid is None:
        return cast(AsyncSession, session_class.fresh(config, holder)), had_cookie
    record = await store.get(cookie_sid)
    if record is None:  # expired or destroyed: never adopt the client's sid
        return cast(AsyncSession, session_class.fresh(config, holder, cookie_sid=cookie_sid)), had_cookie
    return cast(AsyncSession, session_class.from_record(cookie_sid, record, config, holder)), had_cookie


async def end_request(
    session: AsyncSession,
    store: AsyncStore,
    *,
    status: int,
    request_secure: bool,
    had_cookie: bool,
    can_touch: bool = True,
) -> Plan:
    """See :func:`storekit.request.end_request`: the group indexes, then ``set`` or ``touch``,
    then the plan; raises what the store raises, before any header is decided."""
    if not session.destroyed and status < 500:
        session.cookie.reset()  # express-session restarts the expiry on every request
        steps = lifecycle.group_steps(session, session.config.clock())
        for name in steps.leave:
            await agroups.remove_member(store, name, session.id)
        for name in steps.join:
            session.note_group(name, await agroups.add_member(store, name, session.id, until=steps.until))
    toucher = store if can_touch and isinstance(store, SupportsAsyncTouch) else None
    plan = lifecycle.plan(
        session,
        status=status,
        request_secure=request_secure,
        had_cookie=had_cookie,
        store_can_touch=toucher is not None,
    )
    if plan.store == "set" and plan.record is not None:
        await store.set(plan.sid, plan.record)
    elif plan.store == "touch" and plan.record is not None and toucher is not None:
        await toucher.touch(plan.sid, plan.record)
    return plan
