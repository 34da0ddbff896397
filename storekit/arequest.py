"""The async I/O of one request, for the async shells (ASGI): open it, end it.

The awaited twin of :mod:`storekit.request`: the same questions to
:mod:`storekit.lifecycle`, the same store calls in the same order, each awaited
on an :class:`~storekit.contract.AsyncStore`. The shell then adds the returned
plan's headers to its response.

One difference, forced by the mapping being sync: the session cannot be
awaited from the store where the app first reads it, so :func:`open_session`
loads it before the app runs and hands the outcome to the session, which
raises :class:`~storekit.session.SessionUnavailable` where the app first uses
it if the load failed. A route that never uses the session still works during
an outage; it waits for the store's own timeout when the store hangs.
"""

from __future__ import annotations

from typing import Any, cast

from storekit import agroups, groups, lifecycle
from storekit.asession import AsyncSession, AsyncStoreHolder
from storekit.contract import AsyncStore, SupportsAsyncRenew, SupportsAsyncTouch
from storekit.lifecycle import Plan
from storekit.live import adestroy_record, awrite_live
from storekit.options import SessionConfig

__all__ = ["end_request", "load_record", "open_session"]


async def load_record(store: AsyncStore, sid: str, now: float, renew: dict[str, Any] | None = None) -> Any:
    """See :func:`storekit.request.load_record`: the same calls, awaited."""
    if renew is None:
        record = await store.get(sid)
    else:
        record = await cast(SupportsAsyncRenew, store).renew(sid, {"cookie": renew})
    if not isinstance(record, dict):
        return record
    names = sorted(lifecycle.split_groups(record)[0])
    if not names:
        return record
    indexes = {name: await store.get(groups.group_sid(name)) for name in names}
    check = lifecycle.group_check(sid, record, indexes)
    if check.ended:
        await adestroy_record(store, sid, now)
        return None
    return lifecycle.rejoin(record, check.lost)


async def open_session(
    config: SessionConfig,
    store: AsyncStore,
    cookie_header: str | None,
    *,
    session_class: type[AsyncSession] = AsyncSession,
    request_secure: bool = False,
    can_touch: bool = True,
) -> tuple[AsyncSession, bool]:
    """See :func:`storekit.request.open_session`; the session is a ``session_class``, and a
    failed load is raised where the app first uses the session, not here."""
    cookie_sid, had_cookie = lifecycle.verified_sid(cookie_header, config)
    holder = AsyncStoreHolder(store)
    # Session.fresh and deferred build cls(...), so they return a session_class
    if cookie_sid is None:
        return cast(AsyncSession, session_class.fresh(config, holder)), had_cookie
    failure: Exception | None = None
    record: Any = None
    renew = None
    if can_touch and isinstance(store, SupportsAsyncTouch) and isinstance(store, SupportsAsyncRenew):
        renew = lifecycle.renew_cookie(config, request_secure)
    try:
        record = await load_record(store, cookie_sid, config.clock(), renew)
    except Exception as exc:  # raised where the app first uses the session
        failure = exc

    def load() -> Any:
        if failure is not None:
            raise failure
        return record

    session = cast(AsyncSession, session_class.deferred(config, holder, cookie_sid, load))
    session.renewed = renew
    if renew is not None and isinstance(record, dict) and not lifecycle.renewed_at_load(renew, record):
        session.own_record = record
    return session, had_cookie


async def undo_renew(session: AsyncSession, store: AsyncStore) -> None:
    """For a request that fails (the app raised, or answered 5xx), which saves nothing: give a
    session that the renew at load touched with the default cookie its own record back, as a
    store's ``get`` would have left it (``Session.owes_touch``)."""
    record = session.own_record
    if record is None or session.destroyed or session.id != session.cookie_sid:
        return
    session.own_record = None
    if isinstance(store, SupportsAsyncTouch):
        await store.touch(session.id, record)


async def end_request(
    session: AsyncSession,
    store: AsyncStore,
    *,
    status: int,
    request_secure: bool,
    had_cookie: bool,
    can_touch: bool = True,
) -> Plan:
    """See :func:`storekit.request.end_request`: the group indexes, then ``touch``, ``set``, or
    the live write of a loaded session, then the plan; raises what the store raises, before any
    header is decided."""
    if status >= 500:
        await undo_renew(session, store)
    if not session.needed_at_end():
        return lifecycle.untouched_plan(session.cookie_sid or "")
    if not session.destroyed and status < 500:
        session.cookie.reset()  # express-session restarts the expiry on every request
        steps = lifecycle.group_steps(session, session.config.clock())
        for name in steps.leave:
            await agroups.remove_member(store, name, session.id)
        for name in steps.join:
            joined = await agroups.add_member(store, name, session.id, **steps.join_options(name))
            if joined is None:  # the group was ended since this session joined it: end it too
                await adestroy_record(store, session.id, session.config.clock(), marker=not session.is_new)
                session.mark_destroyed()
                break
            session.note_group(name, *joined)
    toucher = store if can_touch and isinstance(store, SupportsAsyncTouch) else None

    def decided() -> Plan:
        return lifecycle.plan(
            session,
            status=status,
            request_secure=request_secure,
            had_cookie=had_cookie,
            store_can_touch=toucher is not None,
        )

    plan = decided()
    if plan.store == "set" and plan.record is not None:
        if not plan.live:
            await store.set(plan.sid, plan.record)
        elif not await awrite_live(store, plan.sid, plan.record):
            session.mark_gone()  # logged out elsewhere while this request ran: stay logged out
            plan = decided()
    elif (
        plan.store == "touch"
        and plan.record is not None
        and toucher is not None
        and not lifecycle.renewed_at_load(session.renewed, plan.record)  # else the load did it
    ):
        await toucher.touch(plan.sid, plan.record)
    return plan
