"""The handshake, written once as steps without I/O.

The server and both clients only move bytes: each feeds its side's
``receive()`` what arrived and sends what comes back. The frames are
:mod:`~storekit.reference.cluster.wire`'s; here they are ordered, bounded,
and what went wrong is named by the class of the error raised:
:class:`Refused`, :class:`Dropped`, :class:`WrongKey` or :class:`NotACluster`. The clients turn
these into the one set of messages that ``common.unavailable`` writes.
"""

from __future__ import annotations

import secrets
from typing import Final

from storekit.errors import cut
from storekit.reference.cluster import wire

__all__ = [
    "READ_SIZE",
    "ClientHandshake",
    "Dropped",
    "HandshakeError",
    "NotACluster",
    "Refused",
    "ServerHandshake",
    "WrongKey",
]

READ_SIZE: Final = 4096
"""What to ask ``recv`` for during the handshake."""


class HandshakeError(wire.WireError):
    """The handshake failed and the connection must be closed; ``reply`` is
    what to send the peer before closing it (empty for nothing)."""

    def __init__(self, message: str, reply: bytes = b"") -> None:
        super().__init__(message)
        self.reply = reply


class Refused(HandshakeError):
    """The server closed the connection before greeting, or refused it for
    a reason other than the key."""


class WrongKey(HandshakeError):
    """A proof of the shared key failed: the two sides hold different keys."""


class Dropped(HandshakeError):
    """The server hung up after greeting without answering the proof. A server answers a bad
    proof with an error frame, so this is not a key mismatch: a master drops the oldest
    waiting handshakes when too many are pending (a flood of connections), or it is stopping."""


class NotACluster(HandshakeError):
    """The peer does not speak the storekit cluster protocol."""


class ClientHandshake:
    """The worker's side: answer the greeting with a proof of the key, then
    check the server's proof. The connection carries requests once ``done``."""

    def __init__(self, secret: bytes, nonce: bytes | None = None) -> None:
        self.secret = secret
        self.nonce = secrets.token_bytes(wire.NONCE_BYTES) if nonce is None else nonce
        self.server_nonce: bytes | None = None
        self.done = False
        self._buf = bytearray()

    def receive(self, data: bytes) -> bytes:
        """Take what the server sent (``b""``: it closed the connection) and
        return what to send it (``b""``: nothing yet); a HandshakeError if the
        handshake failed."""
        if not data:
            raise self.closed()
        self._buf += data
        if self.server_nonce is None:
            return self._greeting()
        try:
            whole = wire.take_frame(self._buf, wire.MAX_HANDSHAKE_FRAME)
        except wire.WireError as exc:
            raise NotACluster(f"it answered the proof of the key with {cut(bytes(self._buf))}") from exc
        if whole is None:
            return b""
        if not wire.check_welcome(self.secret, self.server_nonce, self.nonce, whole):
            raise _refusal(whole)
        if self._buf:
            raise NotACluster(f"it sent {len(self._buf)} bytes after its welcome")
        self.done = True
        return b""

    def _greeting(self) -> bytes:
        seen = bytes(self._buf)
        try:
            whole = wire.take_frame(self._buf, wire.MAX_HANDSHAKE_FRAME)
            if whole is None:
                return b""
            self.server_nonce = wire.parse_hello(whole)
        except wire.WireError as exc:
            raise NotACluster(f"it greeted with {cut(seen)}") from exc
        if self._buf:
            raise NotACluster(f"it sent {len(self._buf)} bytes after its greeting")
        return wire.auth_frame(self.secret, self.server_nonce, self.nonce)

    def closed(self) -> HandshakeError:
        """What the server closing the connection at this step means."""
        if self.server_nonce is None:
            return Refused("it hung up before greeting")
        return Dropped("it hung up after greeting, without answering this process's proof of the key")

    def explain(self, exc: BaseException) -> BaseException:
        """What ``exc``, raised by the connection during the handshake, means."""
        if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            return self.closed()
        return exc


def _refusal(whole: bytes) -> HandshakeError:
    """The error for a reply to the proof that is no welcome."""
    status = wire.reply_status(whole)
    if status == wire.ERROR:
        code, message = wire.decode_error(wire.reply_payload(whole))
        if code == wire.ERR_DENIED:
            return WrongKey(f"it answered {message!r}")
        return Refused(f"it answered {message!r}")
    if status == wire.OK:
        return WrongKey("its own proof of the key does not verify")
    return NotACluster(f"it answered the proof of the key with {cut(whole)}")


class ServerHandshake:
    """The server's side: send ``greeting``, then check the client's proof."""

    __slots__ = ("_buf", "greeting", "leftover", "nonce", "secret")

    def __init__(self, secret: bytes, nonce: bytes | None = None) -> None:
        self.secret = secret
        self.nonce = secrets.token_bytes(wire.NONCE_BYTES) if nonce is None else nonce
        self.greeting = wire.hello_frame(self.nonce)
        self.leftover = b""
        self._buf = bytearray()

    def receive(self, data: bytes) -> bytes | None:
        """Take what the client sent; None until its proof is all there, then
        the welcome to send it (what followed the proof is in ``leftover``).
        NotACluster as soon as a first frame announces more than a proof's
        size; WrongKey, whose ``reply`` is the error to send, for a bad proof."""
        self._buf += data
        try:
            whole = wire.take_frame(self._buf, wire.MAX_HANDSHAKE_FRAME)
        except wire.WireError as exc:
            raise NotACluster(f"its first frame is no proof of the key: {exc}") from None
        if whole is None:
            return None
        client_nonce = wire.check_auth(self.secret, self.nonce, whole)
        if client_nonce is None:
            denied = wire.error_frame(wire.ERR_DENIED, "the proof of the key does not verify")
            raise WrongKey("its proof of the key does not verify", denied)
        self.leftover = bytes(self._buf)
        return wire.welcome_frame(self.secret, self.nonce, client_nonce)
