"""The layout of the persistence files (``setup(persist=...)``), with no I/O.

Both files start with a header: an 8-byte magic (:data:`LOG_MAGIC` or
:data:`SNAPSHOT_MAGIC`), a 2-byte format :data:`VERSION` and an 8-byte
generation. Records follow, each a 4-byte length and a 4-byte CRC-32 of the
body, then the body: ``op`` (1 byte), namespace length (1), sid length (2),
the namespace, the sid and the value (the stored value, expiry + JSON, for
PUT; the touch's value for TOUCH; nothing for DELETE and CLEAR).

The log holds the changes the master made, in order, as their effects: a PUT
of the value stored, a DELETE of a session that was there, a TOUCH applied to
a live session, a CLEAR of a namespace. The snapshot holds one PUT per
session, then an END record whose value is the count of PUTs. A snapshot of
generation ``G`` holds what the logs before ``G`` did; the log of generation
``G`` continues it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Final, NamedTuple

__all__ = [
    "CLEAR",
    "DELETE",
    "END",
    "HEADER_SIZE",
    "LOG_MAGIC",
    "PUT",
    "SNAPSHOT_MAGIC",
    "TOUCH",
    "VERSION",
    "Header",
    "Record",
    "Scan",
    "decode_count",
    "encode_count",
    "header",
    "parse_header",
    "record",
]

LOG_MAGIC: Final = b"SKCL-LOG"
SNAPSHOT_MAGIC: Final = b"SKCL-SNP"
VERSION: Final = 1
PUT, DELETE, TOUCH, CLEAR, END = range(1, 6)
MAX_RECORD: Final = 1 << 30
"""No record is this large; a length beyond it is damage, not a record."""

_HEADER = struct.Struct("!8sHQ")  # magic, version, generation
_RECORD = struct.Struct("!II")  # body length, CRC-32 of the body
_BODY = struct.Struct("!BBH")  # op, namespace length, sid length
_COUNT = struct.Struct("!Q")
HEADER_SIZE: Final = _HEADER.size
_crc = zlib.crc32


class Header(NamedTuple):
    magic: bytes
    version: int
    generation: int


class Record(NamedTuple):
    op: int
    namespace: bytes
    sid: bytes
    value: bytes


class Scan:
    """The whole, intact records of ``data`` from ``offset``, as it is iterated, up to
    the first that is cut short or fails its checksum; then :attr:`end` is where the
    valid prefix ends and :attr:`problem` says why what follows is no record (None
    when the data ends with a whole record). ``base`` is added to the offsets that
    the problem names (where ``data`` starts in its file)."""

    def __init__(self, data: bytes, offset: int, base: int = 0) -> None:
        self.data, self.end, self.base = data, offset, base
        self.problem: str | None = None

    def __iter__(self) -> Iterator[Record]:
        view = memoryview(self.data)
        size, offset, base = len(view), self.end, self.base
        unpack_record, unpack_body, crc32 = _RECORD.unpack_from, _BODY.unpack_from, _crc
        head, body_head = _RECORD.size, _BODY.size
        while offset < size:
            if size - offset < head:
                self.problem = f"{size - offset} bytes at offset {base + offset} are a cut record header"
                return
            length, crc = unpack_record(view, offset)
            start = offset + head
            end = start + length
            if length < body_head or length > MAX_RECORD:
                self.problem = f"the record at offset {base + offset} announces {length} bytes"
                return
            if end > size:
                self.problem = (
                    f"the record at offset {base + offset} is cut short ({size - start} of {length} bytes)"
                )
                return
            body = view[start:end]
            if crc32(body) != crc:
                self.problem = f"the record at offset {base + offset} fails its checksum"
                return
            op, ns_len, sid_len = unpack_body(body)
            sid_start = body_head + ns_len
            value_start = sid_start + sid_len
            if value_start > length:
                self.problem = f"the record at offset {base + offset} has names beyond its end"
                return
            offset = self.end = end
            yield Record(
                op,
                bytes(body[body_head:sid_start]),
                bytes(body[sid_start:value_start]),
                bytes(body[value_start:]),
            )


def header(magic: bytes, generation: int) -> bytes:
    return _HEADER.pack(magic, VERSION, generation)


def parse_header(data: bytes) -> Header | None:
    """The header at the start of ``data``; None while ``data`` is shorter than one."""
    if len(data) < _HEADER.size:
        return None
    return Header(*_HEADER.unpack_from(data))


def record(op: int, namespace: bytes, sid: bytes = b"", value: bytes = b"") -> bytes:
    """One record, framed and checksummed."""
    body = b"".join((_BODY.pack(op, len(namespace), len(sid)), namespace, sid, value))
    return _RECORD.pack(len(body), _crc(body)) + body


def encode_count(count: int) -> bytes:
    return _COUNT.pack(count)


def decode_count(value: bytes) -> int | None:
    if len(value) != _COUNT.size:
        return None
    count: int = _COUNT.unpack(value)[0]
    return count
