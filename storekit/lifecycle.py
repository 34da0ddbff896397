"""The session lifecycle's decisions, as data: every shell asks here what to do.

Pure: nothing here calls a store or reads a request. A shell (WSGI, Flask,
Django, ASGI) turns its request into arguments, calls these functions, and
does what the answer says with its own I/O:

* :func:`verified_sid`: which sid the ``Cookie`` header names, if any (of at
  most :data:`MAX_CANDIDATES` values, so a hostile header costs a bounded
  number of HMACs);
* :func:`split_record` / :func:`record_of`: a stored session to and from the
  app's data, the express-session ``cookie`` and the groups;
* :func:`group_check`: whether a loaded session's groups were ended since it
  joined them, or lost its membership;
* :func:`fingerprint`: the one way a change is detected;
* :func:`decide` and :func:`plan`: at the end of a request, save, touch or
  skip, whether the save may only replace a session still stored (``live``),
  the ``Set-Cookie`` value (set, delete or none), and ``Vary``;
* :func:`group_steps`: the group indexes to write before the session is saved;
* :func:`ended_sid` / :func:`ended_record`: the short-lived marker a destroy
  leaves behind for a store without ``replace``, and :func:`can_replace`;
* :func:`load_failure_status`: the status of a request whose session could not load.

The rules are express-session's (``shouldSave``, ``shouldTouch``,
``shouldSetCookie``), with the additions stated on :func:`decide`.

An app key named ``cookie`` is the app's: it is stored as
``storekit.key:cookie`` so that the record's ``cookie`` stays express-session's,
and read back as ``cookie``. ``storekit.groups`` (where the groups are kept)
and keys that begin with ``storekit.key:`` are escaped the same way, so the
mapping is one-to-one. (The :class:`storekit.session.Session` refuses
``storekit.groups`` anyway and offers ``join_group()``.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from storekit import groups as _groups
from storekit.codec import MAX_SID_LENGTH, cookie_json
from storekit.cookie import cookie_values, set_cookie_header, sign, signed_sids
from storekit.errors import InvalidSessionData, StoreUnavailable, cut
from storekit.options import SessionConfig, SessionCookie

if TYPE_CHECKING:
    from storekit.session import Session

__all__ = [
    "ENDED_PREFIX",
    "ENDED_TTL",
    "ESCAPE",
    "MAX_CANDIDATES",
    "RESERVED_PREFIXES",
    "Decision",
    "GroupCheck",
    "GroupSteps",
    "Plan",
    "app_key",
    "can_replace",
    "decide",
    "ended_record",
    "ended_sid",
    "fingerprint",
    "group_check",
    "group_steps",
    "load_failure_status",
    "plan",
    "record_of",
    "rejoin",
    "renew_cookie",
    "renewed_at_load",
    "set_cookie_value",
    "split_groups",
    "split_record",
    "stored_groups",
    "stored_key",
    "untouched_plan",
    "vary_cookie",
    "verified_sid",
]

ESCAPE = "storekit.key:"
"""The prefix under which an app key that would clash with the record's own keys is stored."""

Encode = Callable[[Any], Any]

MAX_CANDIDATES = 4
"""How many values of the session cookie's name a request may send and have verified: the
first four. A browser sends one per matching path and domain; more are an attack on the
HMAC (14,000 forged values in a 287 KB header would cost 14,000 HMACs per secret)."""

ENDED_PREFIX = "storekit.ended:"
"""The sid prefix of the marker a destroy leaves for a store without ``replace``."""

ENDED_TTL = 300.0
"""How long that marker lives (seconds): longer than the few store calls it guards."""

RESERVED_PREFIXES = (_groups.GROUP_PREFIX, ENDED_PREFIX)
"""Sid prefixes of storekit's own records; a cookie naming such a sid is refused."""


_CLASHING = frozenset({"cookie", _groups.GROUPS_KEY})


def stored_key(key: str) -> str:
    """The key under which the app's ``key`` is stored: ``cookie``, ``storekit.groups`` and
    ``storekit.key:...`` are escaped, so that no app key is taken for the record's own."""
    return ESCAPE + key if key in _CLASHING or key.startswith(ESCAPE) else key


def app_key(key: str) -> str:
    """The app's key for a stored ``key`` (the inverse of :func:`stored_key`)."""
    return key[len(ESCAPE) :] if key.startswith(ESCAPE) else key


def fingerprint(data: Mapping[str, Any], groups: Mapping[str, Any]) -> str:
    """What "modified" compares: the JSON of the data (as stored) and the groups, without the cookie.

    Key order counts, as it does in the JSON the store keeps.
    """
    return json.dumps([data, groups], separators=(",", ":"), default=repr)  # the store validates


def stored_groups(times: Mapping[str, float], generations: Mapping[str, str]) -> dict[str, Any]:
    """The groups as a record keeps them: ``{name: [until, generation]}``, or a bare ``until``
    for a group whose index generation is not known yet."""
    return {
        name: until if generations.get(name) is None else [until, generations[name]]
        for name, until in times.items()
    }


def record_of(
    data: Mapping[str, Any], cookie: dict[str, Any], groups: Mapping[str, Any], encode: Encode | None = None
) -> dict[str, Any]:
    """The session as the store keeps it: ``cookie`` (from :func:`storekit.codec.cookie_json`),
    the data with its keys escaped (and each value passed through ``encode``), the groups
    (as :func:`stored_groups` writes them) if any."""
    record: dict[str, Any] = {"cookie": cookie}
    for key, value in data.items():
        record[stored_key(key)] = value if encode is None else encode(value)
    if groups:
        record[_groups.GROUPS_KEY] = dict(groups)
    return record


def split_record(
    sid: str, record: object, decode: Encode | None = None
) -> tuple[dict[str, Any], object, dict[str, float]]:
    """A stored session as (the app's data, the stored ``cookie``, the groups).

    Raises InvalidSessionData for a record that is not a session.
    """
    if not isinstance(record, dict):
        raise InvalidSessionData(
            f"the store returned {cut(record)} for sid {sid[:6]!r}..., not a session (a dict)"
        )
    times, _ = _split_groups(record)
    data = {
        app_key(key): value if decode is None else decode(value)
        for key, value in record.items()
        if key not in ("cookie", _groups.GROUPS_KEY)
    }
    return data, record.get("cookie"), times


def _is_time(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _split_groups(record: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    groups = record.get(_groups.GROUPS_KEY, {})
    times: dict[str, float] = {}
    generations: dict[str, str] = {}
    good = isinstance(groups, dict)
    for name, value in groups.items() if good else ():
        if _is_time(value):
            times[name] = float(value)
        elif isinstance(value, list) and len(value) == 2 and _is_time(value[0]) and isinstance(value[1], str):
            times[name], generations[name] = float(value[0]), value[1]
        else:
            good = False
    if not good:
        raise InvalidSessionData(
            f"session[{_groups.GROUPS_KEY!r}] must map group names to [until, generation], got {cut(groups)}",
            [_groups.GROUPS_KEY],
        )
    return times, generations


def split_groups(record: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """A stored session's groups: until when each index is known to last, and the generation
    of each index it joined (groups stored without one are left out of the second).
    Raises InvalidSessionData for groups that are not ``{name: [until, generation]}``."""
    return _split_groups(record)


@dataclass(frozen=True)
class GroupCheck:
    """What a loaded session's group indexes say: ``ended`` (a group it joined was ended
    since: the session is over) or the groups whose index ``lost`` it (to join again)."""

    ended: bool
    lost: tuple[str, ...]


def group_check(sid: str, record: dict[str, Any], indexes: Mapping[str, dict[str, Any] | None]) -> GroupCheck:
    """Judge a loaded session by the current index of each of its groups (``indexes``, by name).

    See :func:`storekit.groups.membership`: a group ended since the join ends
    the session; a membership the index lost is joined again at the end of the
    request.
    """
    _, generations = _split_groups(record)
    verdicts = {
        name: _groups.membership(index, name, sid, generations.get(name)) for name, index in indexes.items()
    }
    lost = tuple(sorted(name for name, verdict in verdicts.items() if verdict == "lost"))
    return GroupCheck("ended" in verdicts.values(), lost)


def rejoin(record: dict[str, Any], lost: tuple[str, ...]) -> dict[str, Any]:
    """``record`` with the ``lost`` groups due (until 0), so the end of the request joins them again."""
    if not lost:
        return record
    groups = dict(record[_groups.GROUPS_KEY])
    for name in lost:
        value = groups[name]
        groups[name] = [0.0, value[1]] if isinstance(value, list) else 0.0
    return {**record, _groups.GROUPS_KEY: groups}


def ended_sid(sid: str) -> str | None:
    """The sid of the marker that says ``sid`` was destroyed, or None when it would be too long."""
    marker = ENDED_PREFIX + sid
    return marker if len(marker) <= MAX_SID_LENGTH else None


def ended_record(now: float) -> dict[str, Any]:
    """The marker record: empty, expiring :data:`ENDED_TTL` from ``now``."""
    return {"cookie": cookie_json(max_age=None, expires=now + ENDED_TTL)}


def can_replace(store: object) -> bool:
    """Whether ``store`` offers ``replace(sid, session) -> bool`` (set only while the sid is stored)."""
    return callable(getattr(store, "replace", None))


def load_failure_status(error: BaseException) -> int:
    """503 when the store could not be reached (a transient outage), else 500 (what it holds is
    not a session, or another bug)."""
    return 503 if isinstance(error, (StoreUnavailable, ConnectionError, TimeoutError)) else 500


def verified_sid(cookie_header: str | None, config: SessionConfig) -> tuple[str | None, bool]:
    """The sid of the first validly signed session cookie, and whether one was sent at all.

    Only the first :data:`MAX_CANDIDATES` values of the name are verified. A
    signed sid that no store may hold (empty, too long, one of storekit's own
    records) counts as no cookie: a client never chooses its sid.
    """
    values = cookie_values(cookie_header, config.cookie_name, MAX_CANDIDATES)
    for sid in signed_sids(values, config.keys):
        if not sid.startswith(RESERVED_PREFIXES):
            return sid, True
    return None, bool(values)


@dataclass(frozen=True)
class GroupSteps:
    """The group indexes to write before the session is saved: leave some, (re)join others until
    ``until``; ``expected`` is the generation each rejoined index had when the session joined it
    (a group missing from it is a brand-new join), ``fresh`` that of an index a join creates."""

    leave: tuple[str, ...]
    join: tuple[str, ...]
    until: float
    expected: Mapping[str, str] = field(default_factory=dict)
    fresh: str = ""  # the generation of an index a join creates (storekit.groups.first_generation)

    def join_options(self, name: str) -> dict[str, Any]:
        """The keywords of ``add_member`` (sync or async) for joining group ``name``."""
        return {"until": self.until, "expected": self.expected.get(name), "fresh": self.fresh}


def group_steps(session: Session, now: float) -> GroupSteps:
    """Which indexes this session must leave, join, or refresh so that they outlive it.

    Call it after ``session.cookie.reset()``: an index must outlive the new expiry.
    """
    config = session.config
    due = _groups.groups_due(
        session.group_times, expires=session.cookie.expires, now=now, ttl=config.group_ttl
    )
    # the next refresh comes group_ttl / 2 later at the soonest, however long the session
    until = max(now + config.group_ttl, (session.cookie.expires or 0.0) + config.group_ttl / 2)
    # the generations the session recorded: a rejoin of an index that is gone or of another
    # generation finds the group ended since the join (storekit.groups.add_member)
    expected = split_groups(session.to_record(session.request_secure))[1] if due else {}
    return GroupSteps(
        tuple(sorted(session.left_groups)),
        tuple(due),
        until,
        {name: expected[name] for name in due if name in expected},
        _groups.first_generation(now, config.group_ttl),
    )


@dataclass(frozen=True)
class Decision:
    """What to do at the end of a request.

    ``store``: ``"set"`` the session, ``"touch"`` it, or nothing. ``cookie``:
    ``"set"`` it, ``"delete"`` it, or leave the browser's as it is. ``vary``:
    add ``Vary: Cookie``. ``live``: the session was loaded from the store, so
    the ``set`` may only replace it while it is still stored (it may have been
    destroyed elsewhere meanwhile; a write must not bring it back).
    """

    store: Literal["set", "touch"] | None
    cookie: Literal["set", "delete"] | None
    vary: bool
    live: bool = False


def decide(
    session: Session, *, status: int, request_secure: bool, had_cookie: bool, store_can_touch: bool
) -> Decision:
    """express-session's shouldSave / shouldTouch / shouldSetCookie, plus storekit's rules.

    Call it after ``session.cookie.reset()``. Beyond express-session: a
    destroyed session deletes the cookie the request sent (not one that a
    write found destroyed elsewhere, ``gone``: the request that destroyed it
    may have set a newer cookie, such as a login's); a 5xx response
    saves nothing (as Django); ``always_set`` sends the cookie on every
    response and so also saves a new empty session (a cookie must name a
    stored session); a session that cannot get its cookie (Secure over plain
    http) is not saved if it is new; an explicit ``save()`` or a cookie change
    (``touch()``, ``cookie.max_age = ...``) sends the cookie. A cookie that the
    browser keeps only for its session (``cookie.persistent`` False, as a
    Flask session that is not permanent) is not re-sent by ``rolling``.
    """
    config = session.config
    if session.destroyed:
        return Decision(None, "delete" if had_cookie and not session.gone else None, True)
    if status >= 500:
        return Decision(None, None, session.accessed)
    secure, _ = config.cookie_flags(request_secure)
    deliverable = request_secure or not secure
    modified = session.is_modified()
    changed = session.cookie.changed
    persistent = session.cookie.persistent
    if session.is_new:
        send = (
            config.save_uninitialized or config.always_set or modified or changed or session.explicitly_saved
        )
        if not (config.save_uninitialized or config.always_set) and not session.ever_saved:
            save = modified or changed
        else:
            save = not session.is_saved()
        save = save and deliverable
    else:
        send = (
            (config.rolling and persistent)
            or config.always_set
            or changed
            or (session.cookie.browser_expires is not None and modified)
        )
        save = (not session.is_saved() and (modified or not store_can_touch)) or changed
    send = send and deliverable
    action: Literal["set", "touch"] | None = "set" if save else None
    if action is None and store_can_touch and not session.is_new:
        action = "touch"
    cookie: Literal["set"] | None = "set" if send else None
    return Decision(action, cookie, session.accessed or cookie is not None, live=not session.is_new)


@dataclass(frozen=True)
class Plan:
    """The end of a request, for the shell to carry out in this order.

    ``store``: ``"set"`` or ``"touch"`` ``record`` under ``sid``, or nothing
    (a ``set`` only while the session is still stored when ``live``); then add
    ``set_cookie`` (a ``Set-Cookie`` header value) if any, and ``Vary: Cookie``
    if ``vary``.
    """

    store: Literal["set", "touch"] | None
    sid: str
    record: dict[str, Any] | None
    set_cookie: str | None
    vary: bool
    live: bool = False


def plan(
    session: Session, *, status: int, request_secure: bool, had_cookie: bool, store_can_touch: bool
) -> Plan:
    """What to do at the end of a request (:func:`decide`), with the record and header spelled out.

    Call it after ``session.cookie.reset()`` (express-session restarts the
    expiry on every request) and after the group steps are done (their times
    are in the record).
    """
    decision = decide(
        session,
        status=status,
        request_secure=request_secure,
        had_cookie=had_cookie,
        store_can_touch=store_can_touch,
    )
    record = session.to_record(request_secure) if decision.store is not None else None
    return Plan(
        decision.store,
        session.id,
        record,
        set_cookie_value(session, decision.cookie, request_secure),
        decision.vary,
        decision.live,
    )


def renew_cookie(config: SessionConfig, request_secure: bool) -> dict[str, Any]:
    """The cookie an unchanged session of ``config`` would be touched with at the end of a
    request starting now: what a store's ``renew`` gets at load, so that the end has no touch
    left to do (express-session also restarts the expiry when the request starts)."""
    cookie = SessionCookie.new(config)
    cookie.reset()
    return cookie.to_json(config, config.cookie_flags(request_secure)[0])


def renewed_at_load(renewed: dict[str, Any] | None, record: dict[str, Any] | None) -> bool:
    """Whether a renew at load already did what touching ``record`` would: the same cookie but
    for its expiry, which counts from the request's start. A session with its own max age
    ("remember me"), or another path or flag, is touched at the end as usual."""
    if renewed is None or record is None:
        return False
    cookie = record.get("cookie")
    if not isinstance(cookie, dict):
        return False
    return {k: v for k, v in cookie.items() if k != "expires"} == {
        k: v for k, v in renewed.items() if k != "expires"
    }


def untouched_plan(sid: str) -> Plan:
    """The end of a request whose app never used its session: no store call, no header."""
    return Plan(None, sid, None, None, False)


def set_cookie_value(
    session: Session, action: Literal["set", "delete"] | None, request_secure: bool
) -> str | None:
    """The ``Set-Cookie`` header value that sets or deletes the session's cookie, or None.

    A deletion is the same cookie (name, path, domain, flags) with an empty
    value that expired in 1970, as :func:`storekit.cookie.delete_cookie_header` writes it.
    """
    if action is None:
        return None
    config, cookie = session.config, session.cookie
    secure, same_site = config.cookie_flags(request_secure)
    expires: float | None
    if action == "delete":
        value, expires, now = "", 0.0, 0.0
    else:
        value, now = sign(session.id, config.keys[0]), config.clock()
        expires = cookie.browser_expires
    return set_cookie_header(
        config.cookie_name,
        value,
        expires=expires,
        now=now,
        path=config.path,
        domain=config.domain,
        secure=secure,
        http_only=config.http_only,
        same_site=same_site,
        partitioned=config.partitioned,
    )


def vary_cookie(value: str | None) -> str:
    """The ``Vary`` value a response that used the session sends, given the app's own.

    ``None`` (the app sent none) gives ``"Cookie"``; a value that already
    names ``Cookie`` or ``*`` is kept as it is (returned unchanged); any other
    gets ``", Cookie"`` appended.
    """
    if value is None:
        return "Cookie"
    tokens = {token.strip().lower() for token in value.split(",")}
    return value if "*" in tokens or "cookie" in tokens else f"{value}, Cookie"
