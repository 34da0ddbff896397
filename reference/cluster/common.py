"""The worker side of ClusterStore, without I/O: where the master is, the
request frames, and what the replies mean.

:class:`Requests` validates with the rules of :mod:`storekit.codec` and builds
frames for the blocking :class:`ClusterStore` and its asyncio twin alike.
Sessions are encoded by ``storekit.codec.encode_session`` and decoded by
``storekit.codec.decode_session`` (both on orjson where it is installed).
:func:`unavailable` writes every message a client gives for a server it
cannot use, the handshake's failures included.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from storekit.codec import (
    DEFAULT_MAX_SESSION_BYTES,
    MAX_SID_LENGTH,
    check_seconds,
    check_sid,
    decode_session,
    encode_session,
    parse_expires,
    session_expiry,
)
from storekit.contract import Session
from storekit.errors import InvalidSessionData, StoreError, StoreUnavailable, cut
from storekit.reference.cluster import wire
from storekit.reference.cluster.handshake import Dropped, NotACluster, Refused, WrongKey

__all__ = [
    "BUSY_RETRY",
    "ENV_KEY",
    "ENV_SOCKET",
    "Address",
    "Busy",
    "ClientBase",
    "Requests",
    "address_from_env",
    "unavailable",
]

ENV_SOCKET = "STOREKIT_CLUSTER_SOCKET"
ENV_KEY = "STOREKIT_CLUSTER_KEY"


BUSY_RETRY = 0.05
"""Seconds a client waits before its one retry of a connect refused with EAGAIN."""


class Busy(OSError):
    """The server's listen backlog was full (connect failed with EAGAIN) twice:
    the master is too busy to accept, or something holds many connections open to it."""


@functools.lru_cache(maxsize=4096)
def _wire_expiry(expires: str) -> bytes:
    """A session keeps its cookie.expires over many saves: parse it once."""
    return wire.encode_expiry(parse_expires(expires))


@dataclass(frozen=True)
class Address:
    """Where a cluster server listens and the secret it asks for."""

    path: str
    secret: bytes

    def __repr__(self) -> str:  # never show the secret
        return f"Address({self.path!r})"


def address_from_env() -> Address:
    """The address that ``setup()`` in the master put into the environment."""
    path, key = os.environ.get(ENV_SOCKET), os.environ.get(ENV_KEY)
    if not path or not key:
        raise StoreUnavailable(
            f"no cluster master: ${ENV_SOCKET} and ${ENV_KEY} are not set in this process; call "
            "storekit.reference.cluster.setup() in the master process before it starts its workers "
            "(storekit serve does this itself; for gunicorn, at the top of gunicorn.conf.py: see "
            "docs/cluster.md#gunicorn)"
        )
    try:
        secret = bytes.fromhex(key)
    except ValueError:
        raise StoreUnavailable(  # the value is a secret: say what is wrong, never show it
            f"${ENV_KEY} is not the hex key that setup() writes ({len(key)} characters, not all hex); "
            "start workers from the master that called setup()"
        ) from None
    return Address(path, secret)


def unavailable(address: Address, exc: BaseException, timeout: float) -> StoreUnavailable:
    """The StoreUnavailable that explains ``exc`` for a user."""
    path = address.path
    if isinstance(exc, Busy):
        why = (
            f"the cluster server at {path!r} is busy: its queue of connections waiting to be accepted "
            f"is full (connect failed with EAGAIN, again after {BUSY_RETRY}s); the master is overloaded "
            "or a process holds many connections open to it; try again later"
        )
    elif isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
        why = (
            f"no cluster server is listening at {path!r} ({exc.strerror}); the master must call "
            "storekit.reference.cluster.setup() before starting workers, and keep running"
        )
    elif isinstance(exc, (TimeoutError, BlockingIOError)):
        why = f"the cluster server at {path!r} did not answer within {timeout}s; is the master stopped?"
    elif isinstance(exc, WrongKey):
        why = (
            f"the cluster server at {path!r} rejected this process's key, or failed to prove it holds "
            f"it too ({exc}): ${ENV_KEY} does not match the master's; start workers from the master "
            "that called setup()"
        )
    elif isinstance(exc, Dropped):
        why = (
            f"the cluster server at {path!r} dropped this connection during the handshake ({exc}): "
            "a master drops the oldest waiting handshakes under a flood of connections, or it is "
            "stopping; try again"
        )
    elif isinstance(exc, NotACluster):
        why = (
            f"{path!r} is not a storekit cluster server ({exc}); ${ENV_SOCKET} must name the socket "
            "that storekit.reference.cluster.setup() made"
        )
    elif isinstance(exc, Refused):
        why = (
            f"the cluster server at {path!r} refused the connection ({exc}); a cluster server "
            "serves only processes of the user it runs as"
        )
    elif isinstance(exc, StoreUnavailable):
        return exc
    else:
        why = f"lost the connection to the cluster server at {path!r} ({exc!r}); has the master exited?"
    return StoreUnavailable(why)


class Requests:
    """Frames for one namespace, and what their replies mean."""

    def __init__(
        self,
        namespace: str,
        default_ttl: float | None,
        max_session_bytes: int,
        clock: Callable[[], float],
    ) -> None:
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be a str, got {type(namespace).__name__} {cut(namespace)}")
        ns = namespace.encode("utf-8")
        if len(ns) > wire.MAX_NAMESPACE_BYTES:
            raise ValueError(
                f"namespace {cut(namespace)} is {len(ns)} bytes of UTF-8; at most "
                f"{wire.MAX_NAMESPACE_BYTES} fit (use a shorter name)"
            )
        self.namespace = ns
        self.default_ttl = check_seconds("default_ttl", default_ttl, none="no expiry")
        self.max_session_bytes = max_session_bytes
        self.clock = clock
        self.length = wire.encode_request(wire.LENGTH, ns)
        self.clear = wire.encode_request(wire.CLEAR, ns)
        self.all = wire.encode_request(wire.ALL, ns)

    def _expiry(self, session: Session) -> bytes:
        cookie = session.get("cookie")
        if type(cookie) is dict:
            value = cookie.get("expires")
            if type(value) is str:
                return _wire_expiry(value)
            expires = session_expiry(session)
        else:
            expires = session_expiry(session)  # None, or InvalidSessionData for a bad cookie
        if expires is None and self.default_ttl is not None:
            expires = self.clock() + self.default_ttl
        return wire.encode_expiry(expires)

    def get(self, sid: str) -> bytes:
        return wire.encode_request(wire.GET, self.namespace, _key(sid))

    def set(self, sid: str, session: Session) -> bytes:
        key = _key(sid)
        data = encode_session(session, max_bytes=self.max_session_bytes)
        return wire.encode_request(wire.SET, self.namespace, key, self._expiry(session), data)

    def destroy(self, sid: str) -> bytes:
        return wire.encode_request(wire.DESTROY, self.namespace, _key(sid))

    def replace(self, sid: str, session: Session) -> bytes:
        key = _key(sid)
        data = encode_session(session, max_bytes=self.max_session_bytes)
        return wire.encode_request(wire.REPLACE, self.namespace, key, self._expiry(session), data)

    def touch(self, sid: str, session: Session, op: int = wire.TOUCH) -> bytes:
        """The TOUCH frame, or with ``op=wire.RENEW`` the RENEW frame (the same value)."""
        key = _key(sid)
        if not isinstance(session, dict):
            raise InvalidSessionData(f"touch needs the session dict, got {type(session).__name__}")
        patch = encode_session({"cookie": session.get("cookie")}, max_bytes=self.max_session_bytes)
        return wire.encode_request(op, self.namespace, key, self._expiry(session), patch)

    def renew(self, sid: str, session: Session) -> bytes:
        return self.touch(sid, session, wire.RENEW)

    # What the replies mean; each ``reply`` is a whole frame, prefix included.

    @staticmethod
    def session(reply: bytes) -> Session | None:
        """The result of get, and of renew."""
        data = wire.found_json(reply)
        if data is not None:
            try:
                return _stored_session(data)
            except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError; InvalidSessionData is one too
                raise _unreadable(data, exc) from None
        if reply == wire.MISSING_FRAME:
            return None
        return _unexpected(reply)

    @staticmethod
    def done(reply: bytes) -> None:
        if reply != wire.OK_FRAME:
            _unexpected(reply)

    @staticmethod
    def replaced(reply: bytes) -> bool:
        """The result of replace: whether a live session was there to replace."""
        if reply == wire.OK_FRAME:
            return True
        if reply == wire.MISSING_FRAME:
            return False
        return _unexpected(reply)

    @staticmethod
    def count(reply: bytes) -> int:
        if wire.reply_status(reply) != wire.COUNT:
            _unexpected(reply)
        try:
            return wire.decode_count(wire.reply_payload(reply))
        except wire.WireError as exc:
            raise _malformed(exc) from None

    @staticmethod
    def sessions(reply: bytes) -> dict[str, Session]:
        if wire.reply_status(reply) != wire.ITEMS:
            _unexpected(reply)
        try:
            items = wire.decode_items(wire.reply_payload(reply))
        except wire.WireError as exc:
            raise _malformed(exc) from None
        try:
            return {sid.decode(): _stored_session(value[wire.JSON]) for sid, value in items}
        except ValueError as exc:
            bad = next(sid for sid, value in items if not _readable(sid, value[wire.JSON]))
            raise _unreadable(bad, exc, what="all() found a session under sid") from None


_Client = TypeVar("_Client", bound="ClientBase")


class ClientBase:
    """What ClusterStore and AsyncClusterStore share: their arguments, their
    namespace and address, and noticing, in a forked child, that the
    connections it holds are its parent's (``_forget`` them, and open its own)."""

    def __init__(
        self,
        *,
        namespace: str = "",
        default_ttl: float | None = None,
        max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
        address: Address | None = None,
    ) -> None:
        if type(timeout) not in (int, float) or not 0 < timeout < float("inf"):
            raise ValueError(f"timeout must be a positive number of seconds, got {cut(timeout)}")
        self.requests = Requests(namespace, default_ttl, max_session_bytes, clock)
        self.address = address or address_from_env()
        self.timeout = float(timeout)
        self._generation = _forks
        self._forget()  # none yet: this makes the subclass's empty containers

    @property
    def name(self) -> str:
        return self.requests.namespace.decode()

    def namespace(self: _Client, name: str) -> _Client:
        """A store on the same server whose sessions are kept apart from this one's."""
        r = self.requests
        return type(self)(
            namespace=name,
            default_ttl=r.default_ttl,
            max_session_bytes=r.max_session_bytes,
            timeout=self.timeout,
            clock=r.clock,
            address=self.address,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(namespace={self.name!r}, address={self.address!r})"

    def _inherited(self) -> bool:
        """This process is a forked child of the one that made the store's connections."""
        return self._generation != _forks

    def _drop_inherited(self) -> None:
        """In a forked child, forget the parent's connections."""
        if self._generation != _forks:
            self._generation = _forks
            self._forget()

    def _forget(self) -> None:
        """Close this process's copies of the store's sockets, sending nothing on them,
        and hold none; the next operation connects again."""
        raise NotImplementedError


_forks = 0  # bumped in every forked child, so a store notices it was inherited


def _after_fork_in_child() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


def _key(sid: Any) -> bytes:
    """The UTF-8 sid, or InvalidSessionId from ``check_sid`` (sid.1, sid.3)."""
    if type(sid) is str and 0 < len(sid) <= MAX_SID_LENGTH:
        try:
            return sid.encode()
        except UnicodeEncodeError:
            pass
    return check_sid(sid).encode()


def _unexpected(reply: bytes) -> NoReturn:
    if wire.reply_status(reply) == wire.ERROR:
        code, message = wire.decode_error(wire.reply_payload(reply))
        if code == wire.ERR_INVALID_DATA:
            raise InvalidSessionData(message)
        if code == wire.ERR_UNAVAILABLE:
            raise StoreUnavailable(message)
        raise StoreError(f"the cluster server refused the request: {message}")
    raise StoreError(f"the cluster server sent an unexpected reply {cut(reply)}")


def _stored_session(data: bytes) -> Session:
    """The session in the JSON part of a stored value, with the cookie of the touch that renewed it."""
    session_json, touch = wire.split_json(data)
    session = decode_session(session_json)
    if touch is not None:
        session["cookie"] = decode_session(touch).get("cookie")
    return session


def _readable(sid: bytes, data: bytes) -> bool:
    try:
        sid.decode()
        _stored_session(data)
    except ValueError:
        return False
    return True


def _unreadable(found: bytes, exc: ValueError, what: str = "get() found") -> InvalidSessionData:
    """The error for a stored session (or sid) that no client could have written."""
    why = str(exc) if isinstance(exc, InvalidSessionData) else f"{type(exc).__name__}: {exc}"
    return InvalidSessionData(
        f"the cluster server holds data that is no session: {what} {cut(found)}: {why}; a client that "
        "holds the key wrote it around ClusterStore (the server checks only the first and last byte "
        "and the UTF-8): destroy() that sid, or clear() the namespace"
    )


def _malformed(exc: wire.WireError) -> StoreError:
    return StoreError(f"the cluster server sent a malformed reply: {exc}")
