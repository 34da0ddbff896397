"""The sync I/O of one request, for the sync shells (WSGI, Flask): open it, end it.

Each step asks :mod:`storekit.lifecycle` what to do and does the store calls
it names; the shell then adds the returned plan's headers to its response. An
async shell awaits the same calls in the same order.
"""

from __future__ import annotations

from storekit import groups as _groups
from storekit import lifecycle
from storekit.contract import Store, SupportsTouch
from storekit.lifecycle import Plan
from storekit.options import SessionConfig
from storekit.session import Session

__all__ = ["end_request", "open_session"]


def open_session(
    config: SessionConfig,
    store: Store,
    cookie_header: str | None,
    *,
    session_class: type[Session] = Session,
) -> tuple[Session, bool]:
    """The request's session (the stored one, or a fresh one with a fresh sid), and whether
    a session cookie was sent. Raises what the store raises, and InvalidSessionData for a
    stored record that is not a session."""
    cookie_sid, had_cookie = lifecycle.verified_sid(cookie_header, config)
    if cookie_sid is None:
        return session_class.fresh(config, store), had_cookie
    record = store.get(cookie_sid)
    if record is None:  # expired or destroyed: never adopt the client's sid
        return session_class.fresh(config, store, cookie_sid=cookie_sid), had_cookie
    return session_class.from_record(cookie_sid, record, config, store), had_cookie


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

    The group indexes are written first, then the session (``set`` or
    ``touch``); raises what the store raises, before any header is decided.
    """
    if not session.destroyed and status < 500:
        session.cookie.reset()  # express-session restarts the expiry on every request
        steps = lifecycle.group_steps(session, session.config.clock())
        for name in steps.leave:
            _groups.remove_member(store, name, session.id)
        for name in steps.join:
            session.note_group(name, _groups.add_member(store, name, session.id, until=steps.until))
    toucher = store if can_touch and isinstance(store, SupportsTouch) else None
    plan = lifecycle.plan(
        session,
        status=status,
        request_secure=request_secure,
        had_cookie=had_cookie,
        store_can_touch=toucher is not None,
    )
    if plan.store == "set" and plan.record is not None:
        store.set(plan.sid, plan.record)
    elif plan.store == "touch" and plan.record is not None and toucher is not None:
        toucher.touch(plan.sid, plan.record)
    return plan
