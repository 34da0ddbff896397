"""The filter a stopping listener gets (bpf.refuse_new_connections), on real sockets.

It must drop the SYN of a new connection and nothing else: a handshake under
way when it is attached completes, so that connection is accepted and served
instead of reset when the listener closes. TCP_DEFER_ACCEPT makes "under
way" deterministic: the listener holds a connected client's handshake open
until its first data, which then completes it through the filter.
"""

from __future__ import annotations

import select
import selectors
import socket
import time
from collections.abc import Iterator

import pytest

from storekit.reference.sticky.bpf import refuse_new_connections

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_DEFER_ACCEPT"), reason="Linux socket filters")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(3)
    yield sock
    sock.close()


def test_a_handshake_under_way_completes_and_is_accepted(listener: socket.socket) -> None:
    client = socket.create_connection(listener.getsockname(), timeout=3)  # SYN-ACK had: connected
    with client:
        assert refuse_new_connections(listener)
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")  # completes the handshake, after the filter
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(3)
            assert conn.recv(100) == b"GET / HTTP/1.1\r\n\r\n"
            conn.sendall(b"ok")
        assert client.recv(2) == b"ok"


def test_a_queued_connection_is_accepted_and_a_new_one_gets_no_answer(listener: socket.socket) -> None:
    queued = socket.create_connection(listener.getsockname(), timeout=3)
    queued.sendall(b"first")
    with queued:
        assert refuse_new_connections(listener)
        conn, _ = listener.accept()
        with conn:
            assert conn.recv(5) == b"first"
        late = socket.socket()
        late.settimeout(0.5)
        with late, pytest.raises(TimeoutError):  # its SYN is dropped: it would retry, then be refused
            late.connect(listener.getsockname())


def test_a_draining_hand_off_accepts_a_handshake_that_completes_after_the_refusal(
    listener: socket.socket,
) -> None:
    from storekit.reference.sticky.handoff import Handoff
    from storekit.reference.sticky.sockets import Config

    config = Config(app=lambda: None, factory=False, workers=1, routing="round-robin", mode="handoff", seed=0)
    listener.setblocking(False)
    with (
        selectors.DefaultSelector() as sel,
        socket.create_connection(listener.getsockname(), timeout=3) as client,
    ):
        handoff = Handoff(config, listener, sel)
        handoff.begin_drain(1.0)
        assert not handoff.drained()  # the listener stays open while handshakes settle
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")  # its handshake completes now, through the filter
        deadline = time.monotonic() + 5
        while not handoff.drained() and time.monotonic() < deadline:
            for key, _ in sel.select(0.02):
                key.data()
            handoff.expire(time.monotonic())
        assert handoff.drained()
        assert listener.fileno() == -1  # closed once the handshakes settled
        worker_end = handoff.worker_ends[0]
        assert select.select([worker_end], [], [], 3)[0], "the connection never reached the worker"
        for sock in (*handoff.channels, *handoff.worker_ends):
            sock.close()
