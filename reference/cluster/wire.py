"""The ClusterStore wire protocol: frames as bytes, with no sockets.

Every message is a frame: a 4-byte big-endian length, then that many bytes.

Handshake (before it, frames are at most :data:`MAX_HANDSHAKE_FRAME` bytes):

1. server -> client ``HELLO``: ``MAGIC`` + a 32-byte server nonce;
2. client -> server ``AUTH``: a 32-byte client nonce + HMAC-SHA256 over both
   nonces with the master's secret;
3. server -> client ``WELCOME``: HMAC-SHA256 over both nonces with another
   label, proving the server knows the secret too; or an ``ERROR`` frame, and
   the server closes the connection.

Requests: ``op`` (1 byte), namespace length (1), sid length (2), the UTF-8
namespace, the UTF-8 sid, and for set and touch a 6-byte expiry followed by
the payload. The expiry is milliseconds since the epoch, big-endian, so that
stored values compare with ``value[:6] <= now`` and :data:`NEVER` (all ones)
means "no expiry". What the server stores for a session is exactly the tail
of a set request: expiry and JSON, one ``bytes`` object.

Responses: a status byte, then its payload (``FOUND``: expiry + JSON;
``COUNT``: 8-byte count; ``ITEMS``: repeated sid length (2), sid, value length
(4), value; ``ERROR``: a code byte and a UTF-8 message).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Final, NamedTuple

__all__ = [
    "ALL",
    "CLEAR",
    "COUNT",
    "DESTROY",
    "ERROR",
    "ERR_BAD_REQUEST",
    "ERR_DENIED",
    "ERR_INVALID_DATA",
    "EXPIRY_BYTES",
    "FOUND",
    "GET",
    "ITEMS",
    "LENGTH",
    "MAGIC",
    "MAX_HANDSHAKE_FRAME",
    "MAX_NAMESPACE_BYTES",
    "MAX_SID_BYTES",
    "MISSING",
    "NEVER",
    "NEVER_BYTES",
    "NONCE_BYTES",
    "OK",
    "PREFIX",
    "SET",
    "TOUCH",
    "Request",
    "WireError",
    "auth_frame",
    "check_auth",
    "check_welcome",
    "count_frame",
    "decode_count",
    "decode_error",
    "decode_items",
    "decode_request",
    "encode_expiry",
    "encode_request",
    "error_frame",
    "frame_length",
    "hello_frame",
    "item_parts",
    "item_size",
    "max_request_frame",
    "parse_hello",
    "response_header",
    "welcome_frame",
]

MAGIC: Final = b"SKC1"
NONCE_BYTES: Final = 32
MAC_BYTES: Final = 32
MAX_HANDSHAKE_FRAME: Final = 64
EXPIRY_BYTES: Final = 6
NEVER: Final = (1 << 48) - 1
"""The expiry of a session that never expires, in milliseconds."""
NEVER_BYTES: Final = NEVER.to_bytes(EXPIRY_BYTES, "big")

GET, SET, DESTROY, TOUCH, LENGTH, CLEAR, ALL = range(1, 8)
_OPS_WITH_SID: Final = frozenset({GET, SET, DESTROY, TOUCH})
_OPS_WITH_VALUE: Final = frozenset({SET, TOUCH})

OK, FOUND, MISSING, COUNT, ITEMS, ERROR = range(6)
ERR_BAD_REQUEST, ERR_INVALID_DATA, ERR_DENIED = range(1, 4)

_LENGTH = PREFIX = struct.Struct("!I")
"""The length prefix of every frame."""
_REQUEST = struct.Struct("!IBBH")  # frame length, op, namespace length, sid length
_HEAD_STRUCT = struct.Struct("!BBH")
_RESPONSE = struct.Struct("!IB")  # frame length, status
_ITEM_SID = struct.Struct("!H")
_ITEM_VALUE = struct.Struct("!I")
_COUNT = struct.Struct("!Q")
_HEAD: Final = _REQUEST.size - _LENGTH.size

MAX_NAMESPACE_BYTES: Final = 255
MAX_SID_BYTES: Final = 0xFFFF


class WireError(ValueError):
    """A frame that breaks the protocol; the connection that sent it is closed."""


class Request(NamedTuple):
    op: int
    namespace: bytes
    sid: bytes
    value: bytes  # expiry + payload for SET and TOUCH, else b""


def frame_length(buffer: bytes | bytearray | memoryview, offset: int = 0) -> int:
    """The body length announced by the frame header at ``offset``."""
    length: int = _LENGTH.unpack_from(buffer, offset)[0]
    return length


def max_request_frame(max_session_bytes: int) -> int:
    """The largest request body a server with this session limit accepts."""
    return _HEAD + MAX_NAMESPACE_BYTES + MAX_SID_BYTES + EXPIRY_BYTES + max_session_bytes + 64


def encode_expiry(expires: float | None) -> bytes:
    """POSIX seconds (or ``None`` for never) as the 6-byte wire expiry."""
    if expires is None:
        return NEVER_BYTES
    millis = min(max(round(expires * 1000), 0), NEVER - 1)
    return millis.to_bytes(EXPIRY_BYTES, "big")


def encode_request(
    op: int, namespace: bytes, sid: bytes = b"", value: bytes = b"", payload: bytes = b""
) -> bytes:
    """One request frame; for SET and TOUCH, ``value`` is the expiry and
    ``payload`` the JSON (or ``value`` is both, already joined)."""
    body = _HEAD + len(namespace) + len(sid) + len(value) + len(payload)
    return b"".join((_REQUEST.pack(body, op, len(namespace), len(sid)), namespace, sid, value, payload))


def decode_request(body: bytes | memoryview) -> Request:
    """Parse a request body (the frame without its length), or raise WireError."""
    size = len(body)
    if size < _HEAD:
        raise WireError(f"request of {size} bytes is shorter than its {_HEAD}-byte header")
    op, ns_len, sid_len = _HEAD_STRUCT.unpack_from(body)
    start = _HEAD + ns_len
    end = start + sid_len
    if end > size:
        raise WireError(f"request announces {ns_len + sid_len} bytes of names but carries {size - _HEAD}")
    if op in _OPS_WITH_SID:
        if sid_len == 0:
            raise WireError("request has an empty sid")
    elif op in (LENGTH, CLEAR, ALL):
        if sid_len:
            raise WireError(f"op {op} takes no sid")
    else:
        raise WireError(f"unknown op {op}")
    if op in _OPS_WITH_VALUE:
        if size - end < EXPIRY_BYTES:
            raise WireError("set or touch request without an expiry")
    elif end != size:
        raise WireError(f"op {op} carries {size - end} unexpected bytes")
    return Request(op, bytes(body[_HEAD:start]), bytes(body[start:end]), bytes(body[end:]))


def response_header(status: int, payload_length: int) -> bytes:
    """The length prefix and status byte of a response whose payload follows."""
    return _RESPONSE.pack(payload_length + 1, status)


def count_frame(count: int) -> bytes:
    return _RESPONSE.pack(1 + _COUNT.size, COUNT) + _COUNT.pack(count)


def decode_count(payload: bytes | memoryview) -> int:
    count: int = _COUNT.unpack_from(payload)[0]
    return count


def item_parts(sid: bytes, value: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """The pieces of one entry of an ITEMS payload (sid, then value)."""
    return _ITEM_SID.pack(len(sid)), sid, _ITEM_VALUE.pack(len(value)), value


def item_size(sid: bytes, value: bytes) -> int:
    return _ITEM_SID.size + len(sid) + _ITEM_VALUE.size + len(value)


def decode_items(payload: bytes | memoryview) -> list[tuple[bytes, bytes]]:
    """The (sid, value) pairs of an ITEMS payload; values start with their expiry."""
    view = memoryview(payload)
    items: list[tuple[bytes, bytes]] = []
    offset, size = 0, len(view)
    try:
        while offset < size:
            (sid_len,) = _ITEM_SID.unpack_from(view, offset)
            offset += _ITEM_SID.size
            sid = bytes(view[offset : offset + sid_len])
            offset += sid_len
            (value_len,) = _ITEM_VALUE.unpack_from(view, offset)
            offset += _ITEM_VALUE.size
            items.append((sid, bytes(view[offset : offset + value_len])))
            offset += value_len
    except struct.error:
        raise WireError("ITEMS payload ends inside an item") from None
    if offset != size:
        raise WireError("ITEMS payload ends inside an item")
    return items


def error_frame(code: int, message: str) -> bytes:
    text = message.encode("utf-8", "replace")[:4000]
    return _RESPONSE.pack(2 + len(text), ERROR) + bytes([code]) + text


def decode_error(payload: bytes | memoryview) -> tuple[int, str]:
    data = bytes(payload)
    if not data:
        return ERR_BAD_REQUEST, "server sent an empty error"
    return data[0], data[1:].decode("utf-8", "replace")


def _mac(secret: bytes, label: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac.new(secret, label + server_nonce + client_nonce, hashlib.sha256).digest()


def hello_frame(server_nonce: bytes) -> bytes:
    return _LENGTH.pack(len(MAGIC) + NONCE_BYTES) + MAGIC + server_nonce


def parse_hello(body: bytes | memoryview) -> bytes:
    """The server nonce from a HELLO body, or raise WireError."""
    data = bytes(body)
    if len(data) != len(MAGIC) + NONCE_BYTES or not data.startswith(MAGIC):
        raise WireError(f"not a storekit cluster server (greeting {data[:16]!r})")
    return data[len(MAGIC) :]


def auth_frame(secret: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    mac = _mac(secret, b"storekit-cluster client", server_nonce, client_nonce)
    return _LENGTH.pack(NONCE_BYTES + MAC_BYTES) + client_nonce + mac


def check_auth(secret: bytes, server_nonce: bytes, body: bytes | bytearray | memoryview) -> bytes | None:
    """The client nonce if ``body`` proves knowledge of ``secret``, else None."""
    data = bytes(body)
    if len(data) != NONCE_BYTES + MAC_BYTES:
        return None
    client_nonce, mac = data[:NONCE_BYTES], data[NONCE_BYTES:]
    expected = _mac(secret, b"storekit-cluster client", server_nonce, client_nonce)
    return client_nonce if hmac.compare_digest(mac, expected) else None


def welcome_frame(secret: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    mac = _mac(secret, b"storekit-cluster server", server_nonce, client_nonce)
    return _RESPONSE.pack(1 + MAC_BYTES, OK) + mac


def check_welcome(secret: bytes, server_nonce: bytes, client_nonce: bytes, payload: bytes) -> bool:
    expected = _mac(secret, b"storekit-cluster server", server_nonce, client_nonce)
    return hmac.compare_digest(payload, expected)
