"""The session object that the app sees, in every shell.

The decisions are in :mod:`storekit.lifecycle` (pure); the sync I/O of a
request (open it, end it) is in :mod:`storekit.request`. The few
:class:`Session` methods whose meaning is a store operation (``reload``,
``save``, ``destroy``, ``regenerate``, ``end_group``) call the store the shell
handed over, then record the outcome with a ``mark_*`` method, which an
async session reuses after awaiting its store.

A session is loaded when the app first uses it (:meth:`Session.deferred`): a
request that never touches it makes no store call, so a store outage fails
only the requests that use the session, each with :class:`SessionUnavailable`
(503, or 500 for a record that is not a session) and one log line.

The two writes that keep a logout final are in :mod:`storekit.live`.

The rules are express-session's, so that a Python app and an Express app can
share one store: the stored session carries ``cookie`` in express-session's
JSON shape, and the save/touch/Set-Cookie decisions follow its ``shouldSave``,
``shouldTouch`` and ``shouldSetCookie``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from storekit import groups as _groups
from storekit import lifecycle
from storekit.codec import check_sid
from storekit.contract import Store
from storekit.errors import StoreError, cut
from storekit.lifecycle import Decision, Plan, decide, fingerprint
from storekit.live import destroy_record, write_live
from storekit.options import SessionConfig, SessionCookie, request_is_secure

__all__ = [
    "Decision",
    "Plan",
    "Session",
    "SessionConfig",
    "SessionCookie",
    "SessionNotFound",
    "SessionUnavailable",
    "decide",
    "request_is_secure",
]

log = logging.getLogger("storekit.session")

RESERVED = frozenset({_groups.GROUPS_KEY})
"""Keys of a session that are not the app's (``cookie`` is the app's: it is stored escaped)."""

Encode = Callable[[Any], Any]


class SessionNotFound(StoreError, LookupError):
    """``reload()`` found no session under this sid: it expired or was destroyed elsewhere.

    ``.sid`` holds the sid.
    """

    def __init__(self, message: str, sid: str) -> None:
        super().__init__(message)
        self.sid = sid


class SessionUnavailable(StoreError):
    """The session could not be loaded from the store (it is down, it hangs, or what it holds
    is not a session): raised where the app first uses the session, never an empty session.

    ``.status`` is the HTTP status the shells answer with (503 for an outage,
    500 otherwise, :func:`storekit.lifecycle.load_failure_status`); ``.sid``
    the sid the cookie named; ``__cause__`` the store's error.
    """

    def __init__(self, message: str, sid: str, status: int) -> None:
        super().__init__(message)
        self.sid = sid
        self.status = status


def _short(sid: str) -> str:
    return sid[:6] + "..."


class Session(MutableMapping[str, Any]):
    """One client's session: a dict of JSON values with an ``id`` and a ``cookie``.

    Built by the shell with :meth:`fresh` (also ``new``), :meth:`from_record`
    or :meth:`deferred` (loaded on first use); the app finds it in the request
    (``environ["storekit.session"]`` under WSGI). Reading it marks it accessed
    (the response then varies on ``Cookie``); a change, nested ones included,
    is seen at the end of the request by comparing its JSON
    (:func:`storekit.lifecycle.fingerprint`) with what was loaded. The key
    ``storekit.groups`` is reserved; a key named ``cookie`` is the app's
    (``session.cookie``, the attribute, is the session's cookie).

    A subclass may set ``encode`` and ``decode`` (value to JSON and back), as
    the Flask shell does for Flask's tagged values; the store sees ``encode``'s
    output. ``unavailable`` is the error raised where a deferred load failed
    (the Flask shell's is also an HTTP 503).
    """

    encode: Encode | None = None
    decode: Encode | None = None
    unavailable: type[SessionUnavailable] = SessionUnavailable

    renewed: dict[str, Any] | None = None
    """The cookie a ``renew`` at load touched the session with (None: loaded with ``get``)."""

    own_record: dict[str, Any] | None = None
    """Set where a renew before the app ran (the ASGI shell loads every session up front)
    wrote the default cookie over a session with a cookie of its own (its own max age, say):
    the record as the renew found it, its own cookie included (see ``owes_touch``)."""

    @property
    def owes_touch(self) -> bool:
        """The end touches the session back with its own cookie even if the app never used it,
        so that a request that does not look at it never shortens its life; a request that
        fails gives it back ``own_record``."""
        return self.own_record is not None

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
        generations: dict[str, str] | None = None,
        saved: bool = False,
    ) -> None:
        self._id = sid
        self._data = data
        self._groups: dict[str, float] = dict(groups or {})
        self._generations: dict[str, str] = dict(generations or {})
        self._left: set[str] = set()
        self._cookie = cookie
        self.config = config
        self._store = store
        self.cookie_sid = cookie_sid
        self.accessed = False
        self.destroyed = False
        self.gone = False  # destroyed elsewhere, found by a write in this request
        self.explicitly_saved = False
        self.forced = False
        self.request_secure = False  # the shell sets it: the Secure flag of secure="auto" depends on it
        self._pending: Callable[[], object] | None = None
        self._failure: SessionUnavailable | None = None
        self._original_id = sid
        self._original = self._fingerprint()
        self._saved: str | None = self._original if saved else None

    @classmethod
    def fresh(cls, config: SessionConfig, store: Store, *, cookie_sid: str | None = None) -> Session:
        """A fresh session with a fresh sid; ``cookie_sid`` is the verified sid the request sent, if any."""
        sid = check_sid(config.genid())
        return cls(sid, {}, SessionCookie.new(config), config=config, store=store, cookie_sid=cookie_sid)

    new = fresh  # the name the WSGI docs and tests use; Flask's session has a flag of that name

    @classmethod
    def from_record(cls, sid: str, record: object, config: SessionConfig, store: Store) -> Session:
        """The session stored under ``sid`` (the request's cookie named it).

        Raises InvalidSessionData for a record that is not a session.
        """
        data, stored_cookie, groups = lifecycle.split_record(sid, record, cls.decode)
        assert isinstance(record, dict)  # split_record said so
        _, generations = lifecycle.split_groups(record)
        cookie = SessionCookie.from_json(stored_cookie, config)
        saved = not config.resave  # resave: pretend the store may not hold it, so it is written again
        return cls(
            sid,
            data,
            cookie,
            config=config,
            store=store,
            cookie_sid=sid,
            groups=groups,
            generations=generations,
            saved=saved,
        )

    @classmethod
    def deferred(
        cls, config: SessionConfig, store: Store, cookie_sid: str, load: Callable[[], object]
    ) -> Session:
        """The session of ``cookie_sid``, loaded when the app first uses it: ``load()`` returns
        the record (or None: a fresh session with a fresh sid) or raises, and then every use
        raises :attr:`unavailable`."""
        session = cls(
            cookie_sid, {}, SessionCookie.new(config), config=config, store=store, cookie_sid=cookie_sid
        )
        session._pending = load
        return session

    @property
    def loaded(self) -> bool:
        """Whether the session is in hand (it was built loaded, or used since); False for a
        deferred session the app never used, or whose load failed (for shells)."""
        return self._pending is None and self._failure is None

    def _ensure(self, *, at_end: bool = False, quiet: bool = False) -> None:
        if self._failure is not None:
            raise self._failure
        load = self._pending
        if load is None:
            return
        sid = self._id
        try:
            record = load()
            built = (
                type(self).fresh(self.config, self._store, cookie_sid=sid)
                if record is None  # expired or destroyed: never adopt the client's sid
                else type(self).from_record(sid, record, self.config, self._store)
            )
        except Exception as exc:
            status = lifecycle.load_failure_status(exc)
            if at_end:  # only to refresh the cookie (rolling, always_set): the response goes without
                log.warning(
                    "storekit: could not load session %s from %r to refresh its cookie; "
                    "the response goes out without it",
                    _short(sid),
                    self._store,
                    exc_info=exc,
                )
            else:
                log.error(
                    "storekit: could not load session %s from %r; the request answers %d",
                    _short(sid),
                    self._store,
                    status,
                    exc_info=exc,
                )
            self._failure = self.unavailable(
                f"the session {_short(sid)!r} could not be loaded from the store ({type(exc).__name__}: "
                f"{cut(str(exc), 120)}); the request answers {status}",
                sid,
                status,
            )
            self._failure.__cause__ = exc
            self._pending = None
            raise self._failure from exc
        self._pending = None
        self._adopt(built)
        if not (at_end or quiet):  # the app used the session (id, groups, cookie, data): responses vary
            self.accessed = True

    def needed_at_end(self) -> bool:
        """Whether the end of the request has this session to decide on (for shells): the app
        used it, or an option that sends the cookie on every response (``rolling``,
        ``always_set``), or a renew at load that it owes a touch (``owes_touch``), has it
        loaded now. False for any other session the app never used, and for one
        that could not be loaded (logged where it failed): such a request costs no store call."""
        if self.loaded:
            return True
        config = self.config
        if self._failure is not None or not (config.rolling or config.always_set or self.owes_touch):
            return False
        try:
            self._ensure(at_end=True)
        except SessionUnavailable:
            return False
        return True

    def _adopt(self, other: Session) -> None:
        """Take ``other``'s loaded state (sid, data, cookie, groups, what was loaded and saved)."""
        self._id, self._data, self._cookie = other._id, other._data, other._cookie
        self._groups, self._generations, self._left = other._groups, other._generations, other._left
        self.cookie_sid = other.cookie_sid
        self._original_id, self._original, self._saved = other._original_id, other._original, other._saved

    @property
    def cookie(self) -> SessionCookie:
        """The session's cookie (its expiry, its max age)."""
        self._ensure()
        return self._cookie

    @cookie.setter
    def cookie(self, value: SessionCookie) -> None:
        self._ensure()
        self._cookie = value

    def _stored_groups(self) -> dict[str, Any]:
        return lifecycle.stored_groups(self._groups, self._generations)

    def _fingerprint(self) -> str:
        encode = self.encode
        data = self._data if encode is None else {key: encode(value) for key, value in self._data.items()}
        return fingerprint(data, self._stored_groups())

    def peek(self, key: str, default: Any = None) -> Any:
        """``session.get(key, default)`` that does not mark the session accessed (for shells)."""
        self._ensure(quiet=True)
        return self._data.get(key, default)

    def is_empty(self) -> bool:
        """Whether the session holds no data, without marking it accessed (for shells)."""
        self._ensure(quiet=True)
        return not self._data

    def mark_modified(self) -> None:
        """Save this session at the end of the request even if its data looks unchanged."""
        self._ensure()
        self.forced = True

    # -- the mapping -------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self._ensure()
        self.accessed = True
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._ensure()
        self.accessed = True
        self._writable()
        if not isinstance(key, str):
            raise TypeError(
                f"session keys must be str (JSON object keys), got {type(key).__name__} {cut(key)}"
            )
        if key in RESERVED:
            raise ValueError(f"session key {key!r} is reserved for the session's groups; use join_group()")
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        self._ensure()
        self.accessed = True
        self._writable()
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        self._ensure()
        self.accessed = True
        return iter(list(self._data))

    def __len__(self) -> int:
        self._ensure()
        self.accessed = True
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        self._ensure()
        self.accessed = True
        return key in self._data

    def __repr__(self) -> str:
        if not self.loaded:
            return f"<Session {self._id[:6]}... {'unavailable' if self._failure else 'not loaded yet'}>"
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
        self._ensure()
        return self._id

    @property
    def is_new(self) -> bool:
        """True unless this session was loaded under the sid the request's cookie named."""
        self._ensure()
        return self.cookie_sid != self._id

    @property
    def groups(self) -> frozenset[str]:
        """The groups this session belongs to."""
        self._ensure()
        return frozenset(self._groups)

    @property
    def left_groups(self) -> frozenset[str]:
        """Groups left in this request, to be taken out of their index at the end of it."""
        return frozenset(self._left)

    @property
    def group_times(self) -> dict[str, float]:
        """Each group, with until when its index is known to last."""
        self._ensure()
        return dict(self._groups)

    def note_group(self, name: str, until: float, generation: str | None = None) -> None:
        """Record that group ``name``'s index (of ``generation``) lasts until ``until`` (for shells)."""
        self._groups[name] = until
        if generation is not None:
            self._generations[name] = generation

    def is_modified(self) -> bool:
        """express-session's ``isModified``: a new sid, or data unlike what was loaded."""
        self._ensure()
        return self.forced or self._original_id != self._id or self._original != self._fingerprint()

    @property
    def ever_saved(self) -> bool:
        """Whether the store is known to hold some version of this session (loaded or saved)."""
        self._ensure()
        return self._saved is not None

    def is_saved(self) -> bool:
        """express-session's ``isSaved``: the store holds exactly this data under this sid."""
        self._ensure()
        return not self.forced and self._original_id == self._id and self._saved == self._fingerprint()

    def to_record(self, request_secure: bool) -> dict[str, Any]:
        """The session as the store keeps it: the data, ``cookie``, and the groups if any."""
        self._ensure()
        secure, _ = self.config.cookie_flags(request_secure)
        return lifecycle.record_of(
            self._data, self._cookie.to_json(self.config, secure), self._stored_groups(), self.encode
        )

    # -- operations --------------------------------------------------------

    def touch(self) -> None:
        """Restart the cookie's expiry now and send the cookie with this response."""
        self.cookie.reset()
        self.cookie.changed = True

    def save(self) -> None:
        """Write the session to the store now (it is also saved at the end of the request when needed).

        A loaded session is written only while it is still stored
        (:func:`storekit.live.write_live`); one destroyed elsewhere meanwhile ends here: the
        response deletes the cookie and SessionNotFound is raised.
        """
        self._writable()
        self.cookie.reset()
        record = self.to_record(self.request_secure)
        if self.is_new:
            self._store.set(self._id, record)
        elif not write_live(self._store, self._id, record):
            self.mark_vanished()
        self.mark_saved()

    def reload(self) -> None:
        """Replace the data with what the store holds now; raise SessionNotFound if it is gone."""
        self._writable()
        self.mark_reloaded(self._store.get(self.id))

    def _skip_load(self) -> None:
        """A destroy needs nothing of the record: a session not loaded yet stays unloaded."""
        if self._failure is None and self._pending is not None:
            self._pending = None
            self.cookie_sid = self._id

    def in_store(self) -> bool:
        """Whether the store may hold this session: it was loaded, or saved in this request
        (a new session nobody saved needs no destroy)."""
        return not self.destroyed and (not self.is_new or self.ever_saved)

    def destroy(self) -> None:
        """Remove the session from the store now; the response deletes the cookie."""
        self._skip_load()
        if self.in_store():
            destroy_record(self._store, self.id, self.config.clock(), marker=not self.is_new)
        self.mark_destroyed()

    def regenerate(self, *, keep_data: bool = False) -> None:
        """Give the session a new sid and destroy the old record (do this at login).

        The data is dropped, as express-session does, unless ``keep_data``.
        """
        if not keep_data:
            self._skip_load()
        if self.in_store():
            destroy_record(self._store, self.id, self.config.clock(), marker=not self.is_new)
        self.mark_regenerated(keep_data=keep_data)

    # -- what the operations do to the session, once the store has done its part ----------
    # (an async shell's session awaits the store, then calls the same)

    def mark_saved(self) -> None:
        """The store now holds this session as it is."""
        self._saved = self._fingerprint()
        self.forced = False
        self.explicitly_saved = True

    def mark_gone(self) -> None:
        """A write found the session gone (destroyed elsewhere meanwhile): it ends here, and the
        response leaves the browser's cookie alone (that request may have set a newer one)."""
        self.mark_destroyed()
        self.gone = True

    def mark_vanished(self) -> None:
        """:meth:`mark_gone`, and SessionNotFound for the app that asked for the write."""
        self.mark_gone()
        raise SessionNotFound(
            f"session {self._id[:6]!r}... was destroyed elsewhere (a logout) while this request ran; "
            "it was not written back",
            self._id,
        )

    def mark_reloaded(self, record: object) -> None:
        """Take ``record`` (what the store holds now under this sid) as the loaded session."""
        if record is None:
            raise SessionNotFound(
                f"session {self._id[:6]!r}... is no longer in the store (it expired or was destroyed "
                "elsewhere); call regenerate() to start a new one",
                self._id,
            )
        fresh = type(self).from_record(self._id, record, self.config, self._store)
        self._data, self._groups, self._generations = fresh._data, fresh._groups, fresh._generations
        self._original, self._saved = fresh._original, fresh._saved
        self._original_id = self._id

    def mark_destroyed(self) -> None:
        """The record is gone: the session is empty and the response deletes the cookie."""
        self._data = {}
        self._groups, self._generations = {}, {}
        self.destroyed = True
        self.accessed = True

    def mark_regenerated(self, *, keep_data: bool) -> None:
        """The old record is gone: take a new sid, and drop the data unless ``keep_data``."""
        self._id = check_sid(self.config.genid())
        self._original_id = self._id
        self._saved = None
        if keep_data and not self.destroyed:
            self._groups = dict.fromkeys(self._groups, 0.0)  # the new sid must join each index
        else:
            self._data, self._groups = {}, {}
        self._generations = {}
        self._left = set()
        self._original = fingerprint({}, {})
        self._cookie = SessionCookie.new(self.config)
        self.destroyed = self.gone = False
        self.explicitly_saved = False
        self.accessed = True

    def mark_group_ended(self, name: str, ended: list[str]) -> None:
        """Group ``name`` was ended with ``ended`` as its members: this session ends too if it was one."""
        if name in self._groups or self._id in ended:
            self.destroyed = True
            self._data, self._groups, self._generations = {}, {}, {}

    def join_group(self, name: str) -> None:
        """Put this session in group ``name`` (e.g. ``"user:42"``), from the end of this request."""
        self._ensure()
        self._writable()
        _groups.check_group_name(name)
        self._groups.setdefault(name, 0.0)
        self._left.discard(name)

    def leave_group(self, name: str) -> None:
        """Take this session out of group ``name``; nothing happens if it was not in it."""
        self._ensure()
        self._writable()
        self._generations.pop(name, None)
        if self._groups.pop(name, None) is not None:
            self._left.add(name)

    def end_group(self, name: str) -> int:
        """End every session of group ``name`` now, this one included if it is a member.

        Returns how many sessions the group held.
        """
        self._ensure()
        clock = self.config.clock
        ended = _groups.end_group(
            self._store, name, destroy=lambda sid: destroy_record(self._store, sid, clock())
        )
        self.mark_group_ended(name, ended)
        return len(ended)
