"""The session object that the app sees, in every shell.

The decisions are in :mod:`storekit.lifecycle` (pure); the sync I/O of a
request (open it, end it) is in :mod:`storekit.request`. The few
:class:`Session` methods whose meaning is a store operation (``reload``,
``save``, ``destroy``, ``regenerate``, ``end_group``) call the store the shell
handed over, then record the outcome with a ``mark_*`` method, which an
async session reuses after awaiting its store.

The rules are express-session's, so that a Python app and an Express app can
share one store: the stored session carries ``cookie`` in express-session's
JSON shape, and the save/touch/Set-Cookie decisions follow its ``shouldSave``,
``shouldTouch`` and ``shouldSetCookie``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from storekit import groups as _groups
from storekit import lifecycle
from storekit.codec import check_sid
from storekit.contract import Store
from storekit.errors import StoreError, cut
from storekit.lifecycle import Decision, Plan, decide, fingerprint
from storekit.options import SessionConfig, SessionCookie, request_is_secure

__all__ = [
    "Decision",
    "Plan",
    "Session",
    "SessionConfig",
    "SessionCookie",
    "SessionNotFound",
    "decide",
    "request_is_secure",
]

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


class Session(MutableMapping[str, Any]):
    """One client's session: a dict of JSON values with an ``id`` and a ``cookie``.

    Built by the shell with :meth:`fresh` (also ``new``) or :meth:`from_record`; the app finds it
    in the request (``environ["storekit.session"]`` under WSGI). Reading it
    marks it accessed (the response then varies on ``Cookie``); a change,
    nested ones included, is seen at the end of the request by comparing its
    JSON (:func:`storekit.lifecycle.fingerprint`) with what was loaded. The
    key ``storekit.groups`` is reserved; a key named ``cookie`` is the app's
    (``session.cookie``, the attribute, is the session's cookie).

    A subclass may set ``encode`` and ``decode`` (value to JSON and back), as
    the Flask shell does for Flask's tagged values; the store sees ``encode``'s
    output.
    """

    encode: Encode | None = None
    decode: Encode | None = None

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
        self.forced = False
        self.request_secure = False  # the shell sets it: the Secure flag of secure="auto" depends on it
        self._original_id = sid
        self._original = self._fingerprint()
        self._saved: str | None = self._original if saved else None

    @classmethod
    def fresh(cls, config: SessionConfig, store: Store, *, cookie_sid: str | None = None) -> Session:
        """A fresh session with a fresh sid; ``cookie_sid`` is the verified sid the request sent, if any."""
        sid = check_sid(config.genid())
        cookie = SessionCookie(config.max_age, None, config.clock)
        return cls(sid, {}, cookie, config=config, store=store, cookie_sid=cookie_sid)

    new = fresh  # the name the WSGI docs and tests use; Flask's session has a flag of that name

    @classmethod
    def from_record(cls, sid: str, record: object, config: SessionConfig, store: Store) -> Session:
        """The session stored under ``sid`` (the request's cookie named it).

        Raises InvalidSessionData for a record that is not a session.
        """
        data, stored_cookie, groups = lifecycle.split_record(sid, record, cls.decode)
        cookie = SessionCookie.from_json(stored_cookie, config)
        saved = not config.resave  # resave: pretend the store may not hold it, so it is written again
        return cls(sid, data, cookie, config=config, store=store, cookie_sid=sid, groups=groups, saved=saved)

    def _fingerprint(self) -> str:
        encode = self.encode
        data = self._data if encode is None else {key: encode(value) for key, value in self._data.items()}
        return fingerprint(data, self._groups)

    def peek(self, key: str, default: Any = None) -> Any:
        """``session.get(key, default)`` that does not mark the session accessed (for shells)."""
        return self._data.get(key, default)

    def is_empty(self) -> bool:
        """Whether the session holds no data, without marking it accessed (for shells)."""
        return not self._data

    def mark_modified(self) -> None:
        """Save this session at the end of the request even if its data looks unchanged."""
        self.forced = True

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
            raise ValueError(f"session key {key!r} is reserved for the session's groups; use join_group()")
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
        return self.forced or self._original_id != self._id or self._original != self._fingerprint()

    @property
    def ever_saved(self) -> bool:
        """Whether the store is known to hold some version of this session (loaded or saved)."""
        return self._saved is not None

    def is_saved(self) -> bool:
        """express-session's ``isSaved``: the store holds exactly this data under this sid."""
        return not self.forced and self._original_id == self._id and self._saved == self._fingerprint()

    def to_record(self, request_secure: bool) -> dict[str, Any]:
        """The session as the store keeps it: the data, ``cookie``, and the groups if any."""
        secure, _ = self.config.cookie_flags(request_secure)
        return lifecycle.record_of(
            self._data, self.cookie.to_json(self.config, secure), self._groups, self.encode
        )

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
        self.mark_saved()

    def reload(self) -> None:
        """Replace the data with what the store holds now; raise SessionNotFound if it is gone."""
        self._writable()
        self.mark_reloaded(self._store.get(self._id))

    def destroy(self) -> None:
        """Remove the session from the store now; the response deletes the cookie."""
        if not self.destroyed:
            self._store.destroy(self._id)
        self.mark_destroyed()

    def regenerate(self, *, keep_data: bool = False) -> None:
        """Give the session a new sid and destroy the old record (do this at login).

        The data is dropped, as express-session does, unless ``keep_data``.
        """
        if not self.destroyed:
            self._store.destroy(self._id)
        self.mark_regenerated(keep_data=keep_data)

    # -- what the operations do to the session, once the store has done its part ----------
    # (an async shell's session awaits the store, then calls the same)

    def mark_saved(self) -> None:
        """The store now holds this session as it is."""
        self._saved = self._fingerprint()
        self.forced = False
        self.explicitly_saved = True

    def mark_reloaded(self, record: object) -> None:
        """Take ``record`` (what the store holds now under this sid) as the loaded session."""
        if record is None:
            raise SessionNotFound(
                f"session {self._id[:6]!r}... is no longer in the store (it expired or was destroyed "
                "elsewhere); call regenerate() to start a new one",
                self._id,
            )
        fresh = type(self).from_record(self._id, record, self.config, self._store)
        self._data, self._groups = fresh._data, fresh._groups
        self._original, self._saved = fresh._original, fresh._saved
        self._original_id = self._id

    def mark_destroyed(self) -> None:
        """The record is gone: the session is empty and the response deletes the cookie."""
        self._data = {}
        self._groups = {}
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
        self._left = set()
        self._original = fingerprint({}, {})
        self.cookie = SessionCookie(self.config.max_age, None, self.config.clock)
        self.destroyed = False
        self.explicitly_saved = False
        self.accessed = True

    def mark_group_ended(self, name: str, ended: list[str]) -> None:
        """Group ``name`` was ended with ``ended`` as its members: this session ends too if it was one."""
        if name in self._groups or self._id in ended:
            self.destroyed = True
            self._data, self._groups = {}, {}

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
        self.mark_group_ended(name, ended)
        return len(ended)
