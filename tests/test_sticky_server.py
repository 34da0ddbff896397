"""The sticky server with real sockets: clients from many 127.0.0.x addresses, workers killed."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until

from storekit.reference.sticky import StickyServer, StickyServerError, whoami
from storekit.reference.sticky.bpf import kernel_supported
from storekit.reference.sticky.routing import slot_for_key
from storekit.reference.sticky.sockets import Config, open_sockets
from storekit.reference.sticky.worker import HandoffListener
from storekit.testing.http_client import Reply, loopback_sources, process_alive, request

MODES = [
    pytest.param(
        "kernel", marks=pytest.mark.skipif(not kernel_supported(), reason="needs Linux SO_REUSEPORT")
    ),
    "handoff",
]


def served_by(server: StickyServer, source: str, **kw: Any) -> tuple[int, int]:
    """(slot, pid) of the worker that answers a request from `source`."""
    reply = request(server.host, server.port, source=source, **kw)
    assert reply.status == 200, reply
    _, slot, _, pid = reply.text.split()
    return int(slot), int(pid)


def no_process_left(pids: Iterable[int]) -> None:
    __tracebackhide__ = True
    pids = set(pids)
    wait_until(
        lambda: not any(process_alive(p) for p in pids), 10.0, f"processes {sorted(pids)} were not all gone"
    )


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ip_hash(mode: str) -> Iterator[StickyServer]:
    with StickyServer(whoami, workers=4, mode=mode) as server:  # type: ignore[arg-type]
        yield server
        pids = server.all_pids()
    no_process_left(pids)


def test_every_request_from_one_address_reaches_the_same_worker(ip_hash: StickyServer) -> None:
    """sticky.1: and the slot is the one the routing function predicts."""
    for source in loopback_sources(16):
        answers = {served_by(ip_hash, source) for _ in range(3)}
        assert answers == {(ip_hash.slot_for(source), ip_hash.pids[ip_hash.slot_for(source)])}, source


def test_64_addresses_over_4_workers_give_no_worker_twice_its_fair_share(ip_hash: StickyServer) -> None:
    """sticky.5 with real connections."""
    counts = Counter(served_by(ip_hash, source)[0] for source in loopback_sources(64))
    assert max(counts.values()) <= 32, counts
    assert set(counts) == {0, 1, 2, 3}


def test_keep_alive_requests_stay_on_their_connection(ip_hash: StickyServer) -> None:
    import http.client

    conn = http.client.HTTPConnection(ip_hash.host, ip_hash.port, timeout=5, source_address=("127.0.0.3", 0))
    try:
        answers = set()
        for _ in range(5):
            conn.request("GET", "/")
            response = conn.getresponse()
            answers.add(response.read())
            assert response.getheader("Connection", "").lower() != "close"
        assert len(answers) == 1
    finally:
        conn.close()


def test_ipv6_loopback_client_is_sticky(mode: str) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"this machine has no IPv6 loopback ::1 ({exc})")
    with StickyServer(whoami, workers=4, mode=mode, bind=("::1", 0)) as server:  # type: ignore[arg-type]
        answers = {served_by(server, "::1") for _ in range(4)}
        assert answers == {(server.slot_for("::1"), server.pids[server.slot_for("::1")])}


def test_ipv4_client_of_a_dual_stack_listener_routes_as_plain_ipv4(mode: str) -> None:
    """The master sees ::ffff:127.0.0.N (handoff) or an IPv4 header (kernel): same slot as 127.0.0.N."""
    with StickyServer(whoami, workers=4, mode=mode, bind=("::ffff:127.0.0.1", 0)) as server:  # type: ignore[arg-type]
        for source in loopback_sources(12):
            reply = request("127.0.0.1", server.port, source=source)
            assert (
                int(reply.text.split()[1]) == server.slot_for(source) == server.slot_for(f"::ffff:{source}")
            )


def test_round_robin_spreads_a_single_address(mode: str) -> None:
    with StickyServer(whoami, workers=4, routing="round-robin", mode=mode) as server:  # type: ignore[arg-type]
        counts = Counter(served_by(server, "127.0.0.1")[0] for _ in range(40))
    if mode == "handoff":
        assert counts == {0: 10, 1: 10, 2: 10, 3: 10}  # strictly in turn
    else:
        assert len(counts) >= 2, counts  # the kernel's own hash of the whole 4-tuple


def test_header_routing_uses_the_first_x_forwarded_for_address() -> None:
    """Behind a proxy every client shares one address; the header tells them apart."""
    with StickyServer(whoami, workers=4, routing="header", trusted_proxies=["127.0.0.1"]) as server:
        assert server.mode == "handoff"
        slots = set()
        for client in loopback_sources(16, start=100):
            headers = {"X-Forwarded-For": f"{client}, 10.9.9.9"}
            answers = {served_by(server, "127.0.0.1", headers=headers)[0] for _ in range(2)}
            assert answers == {server.slot_for(client)}
            slots |= answers
        assert len(slots) > 1
        # No header: the peer address decides, as ip-hash would.
        assert served_by(server, "127.0.0.7")[0] == server.slot_for("127.0.0.7")


def test_header_routing_on_a_named_cookie() -> None:
    with StickyServer(whoami, workers=4, routing="header", cookie="route", seed=7) as server:
        for value in ("alpha", "beta", "gamma", "delta"):
            headers = {"Cookie": f"x=1; route={value}", "X-Forwarded-For": "203.0.113.1"}
            slot = served_by(server, "127.0.0.1", headers=headers)[0]
            assert slot == slot_for_key(b"cookie:" + value.encode(), 4, 7)


def test_kernel_mode_cannot_route_on_headers() -> None:
    with pytest.raises(ValueError, match="routing 'header' needs the master to read the request head"):
        StickyServer(whoami, routing="header", mode="kernel")


calls = 0


def counting_factory() -> Callable[..., Any]:
    global calls
    calls += 1
    made_in = os.getpid()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{made_in} {os.getpid()} {calls}".encode()]

    return app


def test_app_factory_is_called_once_in_each_worker(mode: str) -> None:
    with StickyServer(counting_factory, factory=True, workers=3, mode=mode) as server:  # type: ignore[arg-type]
        seen = set()
        for source in loopback_sources(48):
            made_in, pid, count = request(server.host, server.port, source=source).text.split()
            assert made_in == pid  # built in the worker, not in the master
            assert count == "1"
            seen.add(int(pid))
        assert seen == set(server.pids.values())
    assert calls == 0  # never in the calling process


def test_killed_worker_is_replaced_in_its_own_slot(ip_hash: StickyServer) -> None:
    """sticky.4: its addresses map to the same slot; the other workers keep running."""
    sources = loopback_sources(32)
    before = {source: served_by(ip_hash, source) for source in sources}
    pids = ip_hash.pids
    victim = before[sources[0]][0]
    old = ip_hash.kill_worker(victim)
    new = ip_hash.wait_replaced(victim, old)
    assert new != old
    for source in sources:
        slot, pid = served_by(ip_hash, source)
        assert slot == before[source][0]
        assert pid == (new if slot == victim else pids[slot])
    assert not process_alive(old)


def test_connections_wait_for_the_replacement_rather_than_fail(mode: str) -> None:
    """While a slot has no worker its connections queue on the slot's socket, which the master keeps."""
    with StickyServer(whoami, workers=2, mode=mode, seed=1) as server:  # type: ignore[arg-type]
        source = next(s for s in loopback_sources(16) if server.slot_for(s) == 0)
        old = server.kill_worker(0, 19)  # SIGSTOP: alive, accepting nothing
        try:
            replies: list[Reply] = []
            thread = threading.Thread(
                target=lambda: replies.append(request(server.host, server.port, source=source))
            )
            thread.start()
            server.kill_worker(0)  # now SIGKILL it; the queued connection must reach the replacement
            thread.join(10)
            assert replies
            assert replies[0].status == 200
            assert int(replies[0].text.split()[3]) != old
        finally:
            os.kill(old, 9) if process_alive(old) else None


def test_no_worker_outlives_a_sigkilled_master(mode: str) -> None:
    server = StickyServer(whoami, workers=3, mode=mode)  # type: ignore[arg-type]
    server.start()
    try:
        pids = server.all_pids()
        assert server.master_pid is not None
        os.kill(server.master_pid, 9)
        no_process_left(pids)
    finally:
        server.stop()


SLOW_REQUEST = 0.5
"""Seconds the app takes to answer: the request SIGTERM must let finish."""


def test_sigterm_lets_an_in_flight_request_finish(tmp_path: Path, mode: str) -> None:
    started = tmp_path / "started"

    def slow(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        started.touch()
        time.sleep(SLOW_REQUEST)  # the request's own work, under way when SIGTERM arrives
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        return [b"done"]

    server = StickyServer(slow, workers=2, mode=mode)  # type: ignore[arg-type]
    server.start()
    pids = server.all_pids()
    replies: list[Reply] = []
    thread = threading.Thread(target=lambda: replies.append(request(server.host, server.port, timeout=10)))
    thread.start()
    wait_until(started.exists, 10, "the request did not reach the app")
    server.stop()
    thread.join(10)
    assert replies
    assert replies[0].body == b"done"
    no_process_left(pids)


def failing_factory() -> Callable[..., Any]:
    raise RuntimeError("no database at db.invalid")


def test_a_worker_that_cannot_start_fails_start_with_its_error() -> None:
    server = StickyServer(failing_factory, factory=True, workers=2)
    with pytest.raises(StickyServerError, match=r"failed to start: RuntimeError: no database at db.invalid"):
        server.start()
    assert server.master_pid is None


def test_handoff_listener_accepts_handed_off_sockets() -> None:
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        master_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener = HandoffListener(worker_end, lsock.getsockname(), socket.AF_INET)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
        client = socket.create_connection(lsock.getsockname())
        conn, _ = lsock.accept()
        socket.send_fds(master_end, [b"c"], [conn.fileno()])
        conn.close()
        handed, address = listener.accept()
        assert address == client.getsockname()
        client.sendall(b"ping")
        assert handed.recv(4) == b"ping"
        for sock in (handed, client, master_end):
            sock.close()
        listener.close()


def refuse(sock: socket.socket, program: object) -> None:
    raise PermissionError(1, "Operation not permitted")


def test_auto_mode_falls_back_to_handoff_when_the_kernel_refuses_to_steer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("storekit.reference.sticky.sockets.attach_reuseport_program", refuse)
    with StickyServer(whoami, workers=2) as server:
        assert server.mode == "handoff"
        assert served_by(server, "127.0.0.2")[0] == server.slot_for("127.0.0.2")


@pytest.mark.skipif(not kernel_supported(), reason="needs Linux SO_REUSEPORT")
def test_kernel_mode_asked_for_and_refused_says_to_use_handoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("storekit.reference.sticky.sockets.attach_reuseport_program", refuse)
    server = StickyServer(whoami, workers=2, mode="kernel")
    with pytest.raises(OSError, match=r"kernel steering is not available here .*; use mode 'handoff'"):
        server.start()


def test_a_replacement_that_cannot_boot_is_retried_while_the_others_serve(tmp_path: Path) -> None:
    broken = tmp_path / "broken"

    def factory() -> Callable[..., Any]:
        if broken.exists():
            raise RuntimeError("database down")
        return whoami

    with StickyServer(factory, factory=True, workers=2, seed=3) as server:
        other = next(s for s in loopback_sources(16) if server.slot_for(s) == 1)
        broken.touch()
        old = server.kill_worker(0)
        wait_until(lambda: server.pids[0] != old, 10, "slot 0 was not restarted")
        assert served_by(server, other)[0] == 1  # the other slot is untouched
        broken.unlink()
        new = server.wait_replaced(0, old, timeout=15)  # backoff is capped at 5s
        source = next(s for s in loopback_sources(16) if server.slot_for(s) == 0)
        assert served_by(server, source) == (0, new)


@pytest.mark.parametrize("mode", MODES)
def test_accepted_connections_send_small_writes_at_once(mode: str) -> None:
    """A response written in two parts (head, then body) must not wait for the client's delayed
    ACK (Nagle's algorithm: 40 ms per request on Linux). The listeners are TCP by their proto and
    carry TCP_NODELAY, so the connections accepted from them have it, and asyncio, which sets it
    only on sockets whose proto is IPPROTO_TCP, finds them TCP too."""
    config = Config(app=lambda: None, factory=False, workers=2, routing="ip-hash", mode=mode, seed=0)  # type: ignore[arg-type]
    listeners = open_sockets("127.0.0.1", 0, config)
    seen: list[tuple[int, int]] = []

    class Record(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            seen.append((sock.proto, sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
            transport.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        servers = [await loop.create_server(Record, sock=listener) for listener in listeners]
        port = listeners[0].getsockname()[1]
        for source in loopback_sources(4):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            writer.close()
        await wait_until_async(lambda: len(seen) == 4)
        for server in servers:
            server.close()

    try:
        asyncio.run(main())
    finally:
        for listener in listeners:
            listener.close()
    assert seen == [(socket.IPPROTO_TCP, 1)] * 4


async def wait_until_async(ready: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)
