"""Session logic without I/O of its own: the session object, and the
decisions taken at the end of a request (save, touch or skip; send, delete or
keep the cookie).

The rules are express-session's, so that a Python app and an Express app can
share one store: the stored session carries ``cookie`` in express-session's
JSON shape, and the save/touch/Set-Cookie decisions follow its ``shouldSave``,
``shouldTouch`` and ``shouldSetCookie``. The shells (:mod:`storekit.wsgi`)
read the request, call :func:`decide`, and do what it says. The few
:class:`Session` methods whose meaning is a store operation (``reload``,
``save``, ``destroy``, ``regenerate``, ``end_group``) call the store the
shell handed over.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

from storekit import groups as _groups
from storekit.codec import check_sid
from storekit.contract import Store
from storekit.errors import InvalidSessionData, StoreError, cut
from storekit.options import SessionConfig, SessionCookie, request_is_secure

__all__ = [
    "Decision",
    "Session",
    "SessionConfig",
    "SessionCookie",
    "SessionNotFound",
    "decide",
    "request_is_secure",
]

RESERVED = frozenset({"cookie", _groups.GROUPS_KEY})
"""Keys of a stored session that are not the app's data."""


class SessionNotFound(StoreError, LookupError):
    """``reload()`` found no session under this sid: it expired or was destroyed elsewhere.

    ``.sid`` holds the sid.
    """

    def __init__(self, message: str, sid: str) -> None:
        super().__init__(message)
        self.sid = sid


def _fingerprint(data: dict[str, Any], groups: dict[str, float]) -> str:
    """What "modified" compares: the JSON of the session without its cookie."""
    return json.dumps([data, groups], separators=(",", ":"), default=repr)  # the store validates


class Session(MutableMapping[str, Any]):
    """One client's session: a dict of JSON values with an ``id`` and a ``cookie``.

    Built by the shell with :meth:`new` or :meth:`from_record`; the app finds it
    in the request (``environ["storekit.session"]`` under WSGI). Reading it
    marks it accessed (the response then varies on ``Cookie``); a change,
    nested ones included, is seen at the end of the request by comparing its
    JSON with what was loaded. The keys ``cookie`` and ``storekit.groups`` are
    reserved.
    """

    def __init__(
        self,
        sid: str,
        data: dict[str, Any],
        cookie: SessionCookie,
        *,
        config: SessionConfig,
        store: Store,
        cookie_sid: str | None,
        groups: dict[str, float] | None = None,
        saved: bool = False,
    ) -> None:
        self._id = sid
        self._data = data
        self._groups: dict[str, float] = dict(groups or {})
        self._left: set[str] = set()
        self.cookie = cookie
        self.config = config
        self._store = store
        self.cookie_sid = cookie_sid
        self.accessed = False
        self.destroyed = False
        self.explicitly_saved = False
        self.request_secure = False  # the shell sets it: the Secure flag of secure="auto" depends on it
        self._original_id = sid
        self._original = _fingerprint(data, self._groups)
        self._saved: str | None = self._original if saved else None

    @classmethod
    def new(cls, config: SessionConfig, store: Store, *, cookie_sid: str | None = None) -> Session:
        """A fresh session with a fresh sid; ``cookie_sid`` is the verified sid the request sent, if any."""
        sid = check_sid(config.genid())
        cookie = SessionCookie(config.max_age, None, config.clock)
        return cls(sid, {}, cookie, config=config, store=store, cookie_sid=cookie_sid)

    @classmethod
    def from_record(cls, sid: str, record: object, config: SessionConfig, store: Store) -> Session:
        """The session stored under ``sid`` (the request's cookie named it).

        Raises InvalidSessionData for a record that is not a session.
        """
        if not isinstance(record, dict):
            raise InvalidSessionData(
                f"the store returned {cut(record)} for sid {sid[:6]!r}..., not a session (a dict)"
            )
        cookie = SessionCookie.from_json(record.get("cookie"), config)
        groups = record.get(_groups.GROUPS_KEY, {})
        if not isinstance(groups, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in groups.values()
        ):
            raise InvalidSessionData(
                f"session[{_groups.GROUPS_KEY!r}] must map group names to times, got {cut(groups)}",
                [_groups.GROUPS_KEY],
            )
        data = {key: value for key, value in record.items() if key not in RESERVED}
        saved = not config.resave  # resave: pretend the store may not hold it, so it is written again
        return cls(sid, data, cookie, config=config, store=store, cookie_sid=sid, groups=groups, saved=saved)

    # -- the mapping -------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.accessed = True
        self._writable()
        if not isinstance(key, str):
            raise TypeError(
                f"session keys must be str (JSON object keys), got {type(key).__name__} {cut(key)}"
            )
        if key in RESERVED:
            raise ValueError(
                f"session key {key!r} is reserved"
                + (" for the cookie; use session.cookie" if key == "cookie" else "; use join_group()")
            )
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        self.accessed = True
        self._writable()
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        self.accessed = True
        return iter(list(self._data))

    def __len__(self) -> int:
        self.accessed = True
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        self.accessed = True
        return key in self._data

    def __repr__(self) -> str:
        state = " destroyed" if self.destroyed else ""
        return f"<Session {self._id[:6]}...{state} keys={cut(sorted(self._data), 60)}>"

    def _writable(self) -> None:
        if self.destroyed:
            raise RuntimeError(
                f"session {self._id[:6]}... was destroyed in this request; "
                "call regenerate() to start a new one"
            )

    # -- state -------------------------------------------------------------

    @property
    def id(self) -> str:
        """The session ID (changes with :meth:`regenerate`)."""
        return self._id

    @property
    def is_new(self) -> bool:
        """True unless this session was loaded under the sid the request's cookie named."""
        return self.cookie_sid != self._id

    @property
    def groups(self) -> frozenset[str]:
        """The groups this session belongs to."""
        return frozenset(self._groups)

    @property
    def left_groups(self) -> frozenset[str]:
        """Groups left in this request, to be taken out of their index at the end of it."""
        return frozenset(self._left)

    @property
    def group_times(self) -> dict[str, float]:
        """Each group, with until when its index is known to last."""
        return dict(self._groups)

    def note_group(self, name: str, until: float) -> None:
        """Record that group ``name``'s index lasts until ``until`` (the shell calls this)."""
        self._groups[name] = until

    def is_modified(self) -> bool:
        """express-session's ``isModified``: a new sid, or data unlike what was loaded."""
        return self._original_id != self._id or self._original != _fingerprint(self._data, self._groups)

    @property
    def ever_saved(self) -> bool:
        """Whether the store is known to hold some version of this session (loaded or saved)."""
        return self._saved is not None

    def is_saved(self) -> bool:
        """express-session's ``isSaved``: the store holds exactly this data under this sid."""
        return self._original_id == self._id and self._saved == _fingerprint(self._data, self._groups)

    def to_record(self, request_secure: bool) -> dict[str, Any]:
        """The session as the store keeps it: the data, ``cookie``, and the groups if any."""
        secure, _ = self.config.cookie_flags(request_secure)
        record: dict[str, Any] = {"cookie": self.cookie.to_json(self.config, secure), **self._data}
        if self._groups:
            record[_groups.GROUPS_KEY] = dict(self._groups)
        return record

    # -- operations --------------------------------------------------------

    def touch(self) -> None:
        """Restart the cookie's expiry now and send the cookie with this response."""
        self.cookie.reset()
        self.cookie.changed = True

    def save(self) -> None:
        """Write the session to the store now (it is also saved at the end of the request when needed)."""
        self._writable()
        self.cookie.reset()
        self._store.set(self._id, self.to_record(self.request_secure))
        self._saved = _fingerprint(self._data, self._groups)
        self.explicitly_saved = True

    def reload(self) -> None:
        """Replace the data with what the store holds now; raise SessionNotFound if it is gone."""
        self._writable()
        record = self._store.get(self._id)
        if record is None:
            raise SessionNotFound(
                f"session {self._id[:6]!r}... is no longer in the store (it expired or was destroyed "
                "elsewhere); call regenerate() to start a new one",
                self._id,
            )
        fresh = Session.from_record(self._id, record, self.config, self._store)
        self._data, self._groups = fresh._data, fresh._groups
        self._original, self._saved = fresh._original, fresh._saved
        self._original_id = self._id

    def destroy(self) -> None:
        """Remove the session from the store now; the response deletes the cookie."""
        if not self.destroyed:
            self._store.destroy(self._id)
        self._data = {}
        self._groups = {}
        self.destroyed = True
        self.accessed = True

    def regenerate(self, *, keep_data: bool = False) -> None:
        """Give the session a new sid and destroy the old record (do this at login).

        The data is dropped, as express-session does, unless ``keep_data``.
        """
        if not self.destroyed:
            self._store.destroy(self._id)
        self._id = check_sid(self.config.genid())
        self._original_id = self._id
        self._original = _fingerprint({}, {})
        self._saved = None
        if keep_data and not self.destroyed:
            self._groups = dict.fromkeys(self._groups, 0.0)  # the new sid must join each index
        else:
            self._data, self._groups = {}, {}
        self._left = set()
        self.cookie = SessionCookie(self.config.max_age, None, self.config.clock)
        self.destroyed = False
        self.explicitly_saved = False
        self.accessed = True

    def join_group(self, name: str) -> None:
        """Put this session in group ``name`` (e.g. ``"user:42"``), from the end of this request."""
        self._writable()
        _groups.check_group_name(name)
        self._groups.setdefault(name, 0.0)
        self._left.discard(name)

    def leave_group(self, name: str) -> None:
        """Take this session out of group ``name``; nothing happens if it was not in it."""
        self._writable()
        if self._groups.pop(name, None) is not None:
            self._left.add(name)

    def end_group(self, name: str) -> int:
        """End every session of group ``name`` now, this one included if it is a member.

        Returns how many sessions the group held.
        """
        ended = _groups.end_group(self._store, name)
        if name in self._groups or self._id in ended:
            self.destroyed = True
            self._data, self._groups = {}, {}
        return len(ended)


@dataclass(frozen=True)
class Decision:
    """What to do at the end of a request.

    ``store``: ``"set"`` the session, ``"touch"`` it, or nothing. ``cookie``:
    ``"set"`` it, ``"delete"`` it, or leave the browser's as it is. ``vary``:
    add ``Vary: Cookie``.
    """

    store: Literal["set", "touch"] | None
    cookie: Literal["set", "delete"] | None
    vary: bool


def decide(
    session: Session, *, status: int, request_secure: bool, had_cookie: bool, store_can_touch: bool
) -> Decision:
    """express-session's shouldSave / shouldTouch / shouldSetCookie, plus storekit's rules.

    Call it after ``session.cookie.reset()``. Beyond express-session: a
    destroyed session deletes the cookie the request sent; a 5xx response
    saves nothing (as Django); ``always_set`` sends the cookie on every
    response and so also saves a new empty session (a cookie must name a
    stored session); a session that cannot get its cookie (Secure over plain
    http) is not saved if it is new; an explicit ``save()`` or a cookie change
    (``touch()``, ``cookie.max_age = ...``) sends the cookie.
    """
    config = session.config
    if session.destroyed:
        return Decision(None, "delete" if had_cookie else None, True)
    if status >= 500:
        return Decision(None, None, session.accessed)
    secure, _ = config.cookie_flags(request_secure)
    deliverable = request_secure or not secure
    modified = session.is_modified()
    changed = session.cookie.changed
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
            config.rolling
            or config.always_set
            or changed
            or (session.cookie.expires is not None and modified)
        )
        save = not session.is_saved() or changed
    send = send and deliverable
    action: Literal["set", "touch"] | None = "set" if save else None
    if action is None and store_can_touch and not session.is_new:
        action = "touch"
    cookie: Literal["set"] | None = "set" if send else None
    return Decision(action, cookie, session.accessed or cookie is not None)
