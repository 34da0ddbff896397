"""One authenticated connection of the cluster server, answered on a thread of its own.

:func:`serve` reads requests, answers them under the server's one lock and
writes the replies, with the bounds that keep one connection from costing the
others: a batch under one hold of the lock ends after ``reply_bound`` bytes
of replies or :data:`BATCH` requests and is sent before the next is answered
(a client that does not read blocks its own thread, holding one batch); a
session of :data:`COPY_LIMIT` bytes or more is sent as it is stored, after its
header, never copied; LENGTH, CLEAR and ALL take the lock for a slice of
work at a time (:func:`_long`); a request over the server's limit (a client
that allows larger sessions than the master) gets an error reply and its
bytes are skipped, so the requests pipelined with it on the connection are
answered as if it had not been sent; a change the journal cannot log (a full
disk) is refused with an ``ERR_UNAVAILABLE`` reply, and the state left as it
was (``state.Unlogged``). It returns when the peer hangs up, or, once
the connection has been idle for its SO_RCVTIMEO, with what it had sent of
its next frame, so that the server can watch it without a thread.

With a journal whose policy is ``fsync="always"``, the changes of a batch
reach the disk before its replies are sent: one fsync per batch that changed
something, taken after the lock is released (group commit: a batch whose
changes an fsync of another connection already covered takes none). A batch
whose changes cannot be made durable (the fsync fails, or the journal is
broken) is not answered: the connection closes.
"""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING, Final

from storekit.reference.cluster import wire
from storekit.reference.cluster.state import ClusterState, Unlogged

if TYPE_CHECKING:
    from storekit.reference.cluster.persist import Journal

__all__ = ["BATCH", "COPY_LIMIT", "REPLY_BOUND", "SKIP_LIMIT", "SLICE", "serve"]

REPLY_BOUND: Final = 4 << 20
"""Bytes of replies a connection's batch may hold before it is sent: what a
client that pipelines requests without reading replies pins, plus one reply."""
BATCH: Final = 256
"""Requests answered under one hold of the lock, at most."""
COPY_LIMIT: Final = 1 << 16
"""Sessions this large are sent as stored, after their header, never joined into a frame."""
SLICE: Final = 1000
"""Sids that LENGTH sweeps under one hold of the lock."""
_BUFFER = 1 << 16  # receive buffer of a connection
_GET, _SET, _TOUCH, _DESTROY, _REPLACE, _RENEW = (
    wire.GET,
    wire.SET,
    wire.TOUCH,
    wire.DESTROY,
    wire.REPLACE,
    wire.RENEW,
)
_OK_FRAME, _MISSING_FRAME = wire.OK_FRAME, wire.MISSING_FRAME
SKIP_LIMIT: Final = 64 << 20
"""A request over the server's limit but of at most this many bytes is refused with an
error reply and its bytes are skipped (a client that allows larger sessions than the
master); a prefix announcing more is taken for garbage and closes the connection."""
_TOO_LONG = -1  # what _next makes of a request over the limit: an op of its own


def _next(
    view: memoryview, offset: int, filled: int, limit: int
) -> tuple[int, bytes, bytes, bytes, int] | None:
    """``wire.next_request``, with a request over ``limit`` turned into a _TOO_LONG one
    that carries the error's text and ends where that request's bytes end."""
    try:
        return wire.next_request(view, offset, filled, limit)
    except wire.FrameTooLong as exc:
        if exc.length > SKIP_LIMIT:
            raise
        return _TOO_LONG, b"", b"", str(exc).encode(), offset + exc.frame_bytes


def serve(
    sock: socket.socket,
    leftover: bytes,
    state: ClusterState,
    lock: threading.Lock,
    *,
    max_frame: int,
    reply_bound: int = REPLY_BOUND,
    journal: Journal | None = None,
) -> bytes | None:
    """Read into one reusable buffer (a ``recv(n)`` would allocate ``n``
    bytes per call), answer the whole frames in it, repeat. GET and SET, the
    hot paths, are answered here, a batch under one hold of the lock; a
    batch ends after ``reply_bound`` bytes of replies or
    :data:`BATCH` requests, and is sent before the next one is answered,
    so a connection that sends requests without reading replies pins at
    most one batch (the thread then blocks in ``sendall``). LENGTH, CLEAR
    and ALL are answered alone, by :func:`_long`, which takes the lock in slices.
    Returns None when the peer hangs up, or, once it has sent nothing for
    the server's ``idle_timeout`` (the kernel's SO_RCVTIMEO, which costs no call per
    request), what it has sent of its next frame, for parking."""
    recv_into, limit, next_request = sock.recv_into, max_frame, _next
    get, set_, touch, destroy = state.get, state.set, state.touch, state.destroy
    found_frame, found_header = wire.found_frame, wire.found_header
    error_frame, invalid, unavailable = wire.error_frame, wire.ERR_INVALID_DATA, wire.ERR_UNAVAILABLE
    durable = journal if journal is not None and journal.sync_each else None
    synced = written = 0
    discard = 0  # bytes still to come of a request over the limit, skipped as they arrive
    buf = bytearray(max(_BUFFER, len(leftover)))
    view = memoryview(buf)
    filled = len(leftover)
    view[:filled] = leftover
    offset = 0
    while True:
        request = next_request(view, offset, filled, limit)
        while request is not None:
            out: list[bytes] = []
            pending = 0
            long_op = None
            with lock:
                if durable is not None:
                    written = durable.written
                while True:
                    op, namespace, sid, value, end = request
                    try:
                        if op == _GET:
                            found = get(namespace, sid)
                            if found is None:
                                out.append(_MISSING_FRAME)
                            elif len(found) < COPY_LIMIT:
                                out.append(found_frame(found))
                                pending += len(found)
                            else:  # sent as stored: a reference, not a copy
                                out += (found_header(found), found)
                                pending += len(found)
                        elif op == _SET:
                            error = set_(namespace, sid, value)
                            out.append(_OK_FRAME if error is None else error_frame(invalid, error))
                        elif op == _TOUCH:
                            error = touch(namespace, sid, value)
                            out.append(_OK_FRAME if error is None else error_frame(invalid, error))
                        elif op == _DESTROY:
                            destroy(namespace, sid)
                            out.append(_OK_FRAME)
                        elif op == _REPLACE:
                            replaced = state.replace(namespace, sid, value)
                            if isinstance(replaced, str):
                                out.append(error_frame(invalid, replaced))
                            else:
                                out.append(_OK_FRAME if replaced else _MISSING_FRAME)
                        elif op == _TOO_LONG:  # refused, and the connection lives on
                            out.append(error_frame(invalid, value.decode()))
                            if end > filled:
                                discard, end = end - filled, filled
                        elif op == _RENEW:
                            renewed = state.renew(namespace, sid, value)
                            if renewed is None:
                                out.append(_MISSING_FRAME)
                            elif isinstance(renewed, str):
                                out.append(error_frame(invalid, renewed))
                            else:
                                out.append(found_frame(renewed))
                                pending += len(renewed)
                        else:
                            long_op = request
                            break
                    except Unlogged as exc:  # not logged, so not made
                        out.append(error_frame(unavailable, str(exc)))
                    offset = end
                    if offset == filled or pending >= reply_bound or len(out) >= BATCH:
                        break
                    request = next_request(view, offset, filled, limit)
                    if request is None:
                        break
                if durable is not None:
                    synced = durable.written
            if durable is not None and synced != written:  # this batch changed something
                durable.sync_to(synced)  # OSError if it cannot: the connection closes, unanswered
            if out:  # one write per batch of small replies
                if len(out) == 1:
                    sock.sendall(out[0])
                elif pending < COPY_LIMIT:
                    sock.sendall(b"".join(out))
                else:
                    for part in out:
                        sock.sendall(part)
            if long_op is not None:
                op, namespace, _sid, _value, offset = long_op
                parts = _long(state, lock, op, namespace, durable)
                for part in parts:
                    sock.sendall(part)
            request = next_request(view, offset, filled, limit) if offset < filled else None
        if offset == filled and len(buf) == _BUFFER:  # the usual case: all answered, nothing to move
            try:
                received = recv_into(view)
            except BlockingIOError:  # idle for idle_timeout
                return None if discard else b""
            filled = 0
        else:
            if offset:
                filled -= offset
                view[:filled] = view[offset : offset + filled]
            size = max(_BUFFER, wire.frame_size(buf, filled))
            if size != len(buf):  # grow for a big frame, or shrink after one
                resized = bytearray(size)
                resized[:filled] = view[:filled]
                view.release()
                buf, view = resized, memoryview(resized)
            try:
                received = recv_into(view[filled:])
            except BlockingIOError:  # idle in the middle of a frame
                return None if discard else bytes(view[:filled])
        offset = 0
        if not received:
            return None
        filled += received
        if discard:  # the body of a refused request: dropped, not kept
            offset = min(discard, filled)
            discard -= offset


def _long(
    state: ClusterState, lock: threading.Lock, op: int, namespace: bytes, durable: Journal | None
) -> list[bytes]:
    """The reply to LENGTH, CLEAR or ALL, each holding the lock for no more
    than a slice of work: LENGTH sweeps in slices of :data:`SLICE` sids,
    then counts in O(1); CLEAR frees the namespace after releasing the lock
    (and, with ``durable``, the "always" journal, is on disk before its reply
    if it cleared anything); ALL copies the namespace's dict (one C-level
    copy) and filters and encodes it outside."""
    if op == wire.LENGTH:
        while True:
            with lock:
                count = state.length(namespace, SLICE)
            if count is not None:
                return [wire.count_frame(count)]
    if op == wire.CLEAR:
        try:
            with lock:
                before = durable.written if durable is not None else 0
                dropped = state.clear(namespace)
                after = durable.written if durable is not None else 0
        except Unlogged as exc:
            return [wire.error_frame(wire.ERR_UNAVAILABLE, str(exc))]
        del dropped  # freed here, with the lock released
        if durable is not None and after != before:
            durable.sync_to(after)  # OSError if it cannot: the connection closes, unanswered
        return [_OK_FRAME]
    with lock:  # ALL; next_request admits no other op
        entries, now = state.snapshot(namespace)
    parts = wire.items_reply(state.live(entries, now))
    del entries
    return [b"".join(parts)]
