"""The sync I/O of one request, for the sync shells (WSGI, Flask): open it, end it.

Each step asks :mod:`storekit.lifecycle` what to do and does the store calls
it names; the shell then adds the returned plan's headers to its response. An
async shell awaits the same calls in the same order.
"""

from __future__ import annotations

from typing import Any, cast

from storekit import groups as _groups
from storekit import lifecycle
from storekit.contract import Store, SupportsRenew, SupportsTouch
from storekit.lifecycle import Plan
from storekit.live import destroy_record, write_live
from storekit.options import SessionConfig
from storekit.session import Session

__all__ = ["end_request", "load_record", "open_session"]


def load_record(store: Store, sid: str, now: float, renew: dict[str, Any] | None = None) -> Any:
    """The record stored under ``sid`` as a request may load it: None when there is none, or
    when a group it joined was ended since (the record is then destroyed); its lost
    memberships marked due, so that the end of the request joins them again.

    One ``get`` (or, with ``renew``, the cookie to touch it with, one ``store.renew``: the
    read and the touch in one round trip), and one more per group the session belongs to
    (its index). Raises what the store raises.
    """
    record = store.get(sid) if renew is None else cast(SupportsRenew, store).renew(sid, {"cookie": renew})
    if not isinstance(record, dict):
        return record  # None, or not a session (Session.from_record says so)
    names = sorted(lifecycle.split_groups(record)[0])
    if not names:
        return record
    check = lifecycle.group_check(sid, record, {name: store.get(_groups.group_sid(name)) for name in names})
    if check.ended:
        destroy_record(store, sid, now)
        return None
    return lifecycle.rejoin(record, check.lost)


def open_session(
    config: SessionConfig,
    store: Store,
    cookie_header: str | None,
    *,
    session_class: type[Session] = Session,
    request_secure: bool = False,
    can_touch: bool = True,
) -> tuple[Session, bool]:
    """The request's session, and whether a session cookie was sent.

    Without a valid cookie, a fresh session with a fresh sid; with one, the
    stored session, loaded from the store when the app first uses it
    (:meth:`Session.deferred`, :func:`load_record`): a request that never uses
    it makes no store call, and a failed load raises
    :class:`~storekit.session.SessionUnavailable` where the app uses it. On a
    store with ``touch`` and ``renew``, when the request may touch
    (``can_touch``, as :func:`end_request` takes it), the load is a ``renew``,
    and an unchanged session costs that one round trip.
    """
    cookie_sid, had_cookie = lifecycle.verified_sid(cookie_header, config)
    if cookie_sid is None:
        return session_class.fresh(config, store), had_cookie
    sid = cookie_sid
    renew = None
    if can_touch and isinstance(store, SupportsTouch) and isinstance(store, SupportsRenew):
        renew = lifecycle.renew_cookie(config, request_secure)
    session = session_class.deferred(
        config, store, sid, lambda: load_record(store, sid, config.clock(), renew)
    )
    session.renewed = renew
    return session, had_cookie


def end_request(
    session: Session,
    store: Store,
    *,
    status: int,
    request_secure: bool,
    had_cookie: bool,
    can_touch: bool = True,
) -> Plan:
    """Do the store writes the end of this request needs, and return the plan whose headers
    the shell adds. ``can_touch`` False keeps an unchanged session's expiry where it is.

    A session the app never used (or could not load) costs nothing: no store
    call, no header. Otherwise the group indexes are written first (a session
    rejoining a group that was ended since it joined is destroyed there, and the
    plan deletes its cookie), then the
    session: ``touch``, ``set`` for a new one, and for one loaded from the store
    a set only while it is still stored (:func:`~storekit.session.write_live`);
    if it was destroyed meanwhile, nothing is written and the plan sets no
    cookie (the browser's may already be a newer one, from a login). Raises
    what the store raises, before any header is decided.
    """
    if not session.needed_at_end():
        return lifecycle.untouched_plan(session.cookie_sid or "")
    if not session.destroyed and status < 500:
        session.cookie.reset()  # express-session restarts the expiry on every request
        steps = lifecycle.group_steps(session, session.config.clock())
        for name in steps.leave:
            _groups.remove_member(store, name, session.id)
        for name in steps.join:
            joined = _groups.add_member(store, name, session.id, **steps.join_options(name))
            if joined is None:  # the group was ended since this session joined it: end it too
                destroy_record(store, session.id, session.config.clock(), marker=not session.is_new)
                session.mark_destroyed()
                break
            session.note_group(name, *joined)
    toucher = store if can_touch and isinstance(store, SupportsTouch) else None

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
            store.set(plan.sid, plan.record)
        elif not write_live(store, plan.sid, plan.record):
            session.mark_gone()  # logged out elsewhere while this request ran: stay logged out
            plan = decided()
    elif (
        plan.store == "touch"
        and plan.record is not None
        and toucher is not None
        and not lifecycle.renewed_at_load(session.renewed, plan.record)  # else the load did it
    ):
        toucher.touch(plan.sid, plan.record)
    return plan
