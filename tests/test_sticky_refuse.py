"""The filter a stopping listener gets (bpf.refuse_new_connections), on real sockets.

It must drop the SYN of a new connection and nothing else: a handshake under
way when it is attached completes, so that connection is accepted and served
instead of reset when the listener closes. TCP_DEFER_ACCEPT makes "under
way" deterministic: the listener holds a connected client's handshake open
until its first data, which then completes it through the filter.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from storekit.reference.sticky import StickyServer
from storekit.reference.sticky.bpf import kernel_supported, refuse_new_connections
from storekit.testing.http_client import loopback_sources

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


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


async def ahello(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


def answer(sock: socket.socket, deadline: float) -> bytes:
    """What `sock` receives until the server closes it, or until `deadline` (monotonic)."""
    data = b""
    with contextlib.suppress(OSError):
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


@pytest.mark.parametrize("interface", ["wsgi", "asgi"])
@pytest.mark.parametrize(
    "mode",
    [pytest.param("kernel", marks=pytest.mark.skipif(not kernel_supported(), reason="Linux")), "handoff"],
)
def test_every_connection_queued_in_the_kernel_at_sigterm_is_served(mode: str, interface: str) -> None:
    """What accepts (the master in handoff mode, the workers in kernel mode) is stopped while 100
    clients connect and send a request, so that all of them wait in the kernel's queues when the
    master gets SIGTERM; once it runs again, every one of them is answered, none reset."""
    app = hello if interface == "wsgi" else ahello
    server = StickyServer(app, workers=2, routing="round-robin", mode=mode, interface=interface)  # type: ignore[arg-type]
    server.start()
    held = [server.master_pid] if mode == "handoff" else list(server.pids.values())
    clients: list[socket.socket] = []
    try:
        for pid in held:
            os.kill(pid, signal.SIGSTOP)
        try:
            for source in loopback_sources(100, start=40):  # under the per-address limit
                client = socket.create_connection((server.host, server.port), 10, (source, 0))
                client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                clients.append(client)
            assert server.master_pid is not None
            os.kill(server.master_pid, signal.SIGTERM)
        finally:
            for pid in held:
                os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 15  # bounded whatever happens
        answers = [answer(client, deadline) for client in clients]
        lost = [a[:40] for a in answers if not a.startswith(b"HTTP/1.1 200")]
        assert not lost, f"{len(lost)} of {len(answers)} queued connections were not served: {lost[:3]}"
    finally:
        for client in clients:
            client.close()
        server.stop()
