"""The sticky server with ASGI apps: uvicorn in every worker, sessions and websockets that stay put.

Real processes on ephemeral loopback ports, clients from many 127.0.0.x addresses.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from helpers import nothing_left_in_session, wait_until
from sticky_load import stop_under_load

pytest.importorskip("uvicorn", reason="ASGI workers run uvicorn (pip install uvicorn)")
starlette = pytest.importorskip("starlette", reason="the ASGI apps here are Starlette apps")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from storekit.reference.sticky import StickyServer, StickyServerError, awhoami, main, whoami  # noqa: E402
from storekit.reference.sticky.app import interface_of, looks_asgi, prepare_app  # noqa: E402
from storekit.reference.sticky.bpf import kernel_supported  # noqa: E402
from storekit.testing.http_client import loopback_sources, process_alive, request  # noqa: E402

MODES = [
    pytest.param(
        "kernel", marks=pytest.mark.skipif(not kernel_supported(), reason="needs Linux SO_REUSEPORT")
    ),
    "handoff",
]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def no_process_left(pids: set[int]) -> None:
    __tracebackhide__ = True
    wait_until(
        lambda: not any(process_alive(p) for p in pids), 10.0, f"processes {sorted(pids)} outlived stop"
    )


@contextlib.contextmanager
def serving(app: Callable[..., Any], **options: Any) -> Iterator[StickyServer]:
    with StickyServer(app, **options) as server:
        yield server
        pids = server.all_pids()
    no_process_left(pids)


def served_by(server: StickyServer, source: str) -> tuple[int, int]:
    reply = request(server.host, server.port, source=source)
    assert reply.status == 200, reply
    _, slot, _, pid = reply.text.split()
    return int(slot), int(pid)


# -- detection ---------------------------------------------------------------------------


class Callable3:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """An ASGI app as an instance."""


def test_an_async_function_an_instance_and_a_starlette_app_are_asgi() -> None:
    assert looks_asgi(awhoami)
    assert looks_asgi(Callable3())
    assert looks_asgi(Starlette())
    assert interface_of(Starlette()) == "asgi"


def test_a_wsgi_app_a_class_and_a_factory_are_not_asgi() -> None:
    assert not looks_asgi(whoami)
    assert not looks_asgi(Callable3)  # the class: calling it makes an instance
    assert not looks_asgi(lambda: awhoami)
    assert interface_of(whoami) == "wsgi"


def test_an_asgi_app_served_as_wsgi_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"'awhoami' is an ASGI app .* but --interface wsgi was asked for"):
        prepare_app(awhoami, factory=False, name="'awhoami'", flag="--factory", interface="wsgi")


def test_a_wsgi_app_served_as_asgi_is_refused_with_the_fix() -> None:
    with pytest.raises(
        ValueError, match=r"an ASGI app takes \(scope, receive, send\): drop --interface asgi"
    ):
        prepare_app(whoami, factory=False, name="'whoami'", flag="--factory", interface="asgi")


def test_a_bad_interface_flag_exits_2_quoting_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["storekit.reference.sticky:awhoami", "--interface", "rsgi"]) == 2
    assert "--interface expects one of auto, asgi, wsgi, got 'rsgi'" in capsys.readouterr().err


def test_missing_uvicorn_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # makes `import uvicorn` raise ImportError
    assert main(["storekit.reference.sticky:awhoami"]) == 2
    assert "ASGI workers run uvicorn: pip install 'storekit[asgi]'" in capsys.readouterr().err


# -- sessions under `storekit serve` ---------------------------------------------------------

COUNTER_APP = """
import os

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from storekit.asgi import SessionMiddleware
from storekit.reference import AsyncClusterStore, AsyncMemoryStore


async def count(request):
    request.session["n"] = request.session.get("n", 0) + 1
    return PlainTextResponse(f"{request.session['n']} {os.getpid()}")


app = Starlette(routes=[Route("/count", count)])
store = AsyncClusterStore() if os.environ["COUNTER_STORE"] == "cluster" else AsyncMemoryStore()
app.add_middleware(SessionMiddleware, store=store, secret="a long random value for the sticky test")
"""


class Browser:
    """One client address with its cookie jar."""

    def __init__(self, port: int, source: str) -> None:
        self.port, self.source = port, source
        self.cookies: dict[str, str] = {}

    def count(self) -> tuple[int, int]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        reply = request("127.0.0.1", self.port, "/count", source=self.source, headers=headers)
        assert reply.status == 200, reply
        for name, value in reply.headers.items():
            if name.lower() == "set-cookie":
                for morsel in SimpleCookie(value).values():
                    self.cookies[morsel.key] = morsel.value
        n, pid = reply.text.split()
        return int(n), int(pid)


@contextlib.contextmanager
def storekit_serve(tmp_path: Path, store: str, *argv: str) -> Iterator[int]:
    """`storekit serve counter:app --workers 4` in its own session; yields the port."""
    (tmp_path / "counter.py").write_text(COUNTER_APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREKIT_CLUSTER")}
    env.update(COUNTER_STORE=store, TMPDIR=str(tmp_path))
    serve = ["serve", "counter:app", "--workers", "4", "--bind", "127.0.0.1:0"]
    cmd = [sys.executable, "-m", "storekit", *serve]
    proc = subprocess.Popen(
        [*cmd, *argv], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        found = re.search(r"counter:app \(ASGI, uvicorn\) on http://127\.0\.0\.1:(\d+), 4 workers", banner)
        assert found, banner + (proc.stderr.read() if proc.poll() is not None else "")
        port = int(found.group(1))
        wait_until(lambda: _answers(port), 15, "the workers did not answer")
        yield port
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
    nothing_left_in_session(proc.pid)


def _answers(port: int) -> bool:
    try:
        return request("127.0.0.1", port, "/count", source="127.0.0.250", timeout=2).status == 200
    except OSError:
        return False


def counters_of(port: int, rounds: int = 3, clients: int = 16) -> dict[str, list[tuple[int, int]]]:
    browsers = [Browser(port, source) for source in loopback_sources(clients)]
    seen: dict[str, list[tuple[int, int]]] = {b.source: [] for b in browsers}
    for _ in range(rounds):
        for browser in browsers:
            seen[browser.source].append(browser.count())
    return seen


@pytest.mark.parametrize("mode", MODES)
def test_each_client_keeps_its_memory_session_under_ip_hash(tmp_path: Path, mode: str) -> None:
    """A Starlette app, storekit.asgi.SessionMiddleware over AsyncMemoryStore, 16 addresses, 4 workers."""
    with storekit_serve(tmp_path, "memory", "--mode", mode) as port:
        seen = counters_of(port)
    for source, answers in seen.items():
        assert [n for n, _ in answers] == [1, 2, 3], (source, answers)
        assert len({pid for _, pid in answers}) == 1, (source, answers)
    assert len({answers[0][1] for answers in seen.values()}) > 1  # more than one worker served


@pytest.mark.parametrize("mode", MODES)
def test_each_client_keeps_its_cluster_session_under_round_robin(tmp_path: Path, mode: str) -> None:
    """AsyncClusterStore: the master runs the cluster server, so any worker may answer."""
    with storekit_serve(tmp_path, "cluster", "--mode", mode, "--routing", "round-robin") as port:
        seen = counters_of(port)
    for source, answers in seen.items():
        assert [n for n, _ in answers] == [1, 2, 3], (source, answers)
    assert len({pid for answers in seen.values() for _, pid in answers}) > 1


def test_memory_sessions_are_lost_under_round_robin(tmp_path: Path) -> None:
    """The control: strict rotation (handoff) over per-worker memory loses the counter."""
    with storekit_serve(tmp_path, "memory", "--mode", "handoff", "--routing", "round-robin") as port:
        seen = counters_of(port, clients=15)  # 16 would bring each client back to its worker each round
    assert any([n for n, _ in answers] != [1, 2, 3] for answers in seen.values()), seen


# -- lifespan --------------------------------------------------------------------------------

LIFESPAN_DIR: Path | None = None
"""Where `lifespan_app` records each worker's startup and shutdown (set before the server starts)."""


@asynccontextmanager
async def lifespan(app: Starlette) -> Any:
    assert LIFESPAN_DIR is not None
    (LIFESPAN_DIR / f"started-{os.getpid()}").touch()
    yield {"started_in": os.getpid()}
    (LIFESPAN_DIR / f"stopped-{os.getpid()}").touch()


async def started_in(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"{request.state.started_in} {os.getpid()}")


lifespan_app = Starlette(routes=[Route("/", started_in)], lifespan=lifespan)


def test_lifespan_startup_and_shutdown_run_in_each_worker(tmp_path: Path, mode: str) -> None:
    global LIFESPAN_DIR
    LIFESPAN_DIR = tmp_path
    with serving(lifespan_app, workers=3, mode=mode) as server:
        workers = set(server.pids.values())
        assert server.interface == "asgi"
        for source in loopback_sources(24):
            started, pid = request(server.host, server.port, source=source).text.split()
            assert started == pid  # the lifespan state of the worker that answered
        started_files = {p.name for p in tmp_path.iterdir() if p.name.startswith("started-")}
        assert started_files == {f"started-{pid}" for pid in workers}
    assert {p.name for p in tmp_path.iterdir() if p.name.startswith("stopped-")} == {
        f"stopped-{pid}" for pid in workers
    }


@asynccontextmanager
async def failing_lifespan(app: Starlette) -> Any:
    raise RuntimeError("no database at db.invalid")
    yield


def test_a_failed_lifespan_startup_fails_start() -> None:
    server = StickyServer(Starlette(lifespan=failing_lifespan), workers=2)
    with pytest.raises(
        StickyServerError, match=r"worker \d failed to start: the app's lifespan startup failed"
    ):
        server.start()
    assert server.master_pid is None


def make_asgi_app() -> Callable[..., Any]:
    return awhoami


def test_a_factory_returning_an_asgi_app_is_served_by_uvicorn(mode: str) -> None:
    with serving(make_asgi_app, factory=True, workers=2, mode=mode) as server:
        assert server.interface == "auto"  # each worker judges what the factory returned
        for source in loopback_sources(8):
            slot, pid = served_by(server, source)
            assert (slot, pid) == (server.slot_for(source), server.pids[slot])


# -- workers: stickiness, replacement, drain ------------------------------------------------------


def test_every_request_from_one_address_reaches_the_same_asgi_worker(mode: str) -> None:
    with serving(awhoami, workers=4, mode=mode) as server:
        for source in loopback_sources(16):
            answers = {served_by(server, source) for _ in range(3)}
            assert answers == {(server.slot_for(source), server.pids[server.slot_for(source)])}, source


def test_a_killed_asgi_worker_is_replaced_in_its_own_slot(mode: str) -> None:
    with serving(awhoami, workers=4, mode=mode) as server:
        sources = loopback_sources(24)
        before = {source: served_by(server, source) for source in sources}
        pids = server.pids
        victim = before[sources[0]][0]
        old = server.kill_worker(victim)
        new = server.wait_replaced(victim, old)
        for source in sources:
            slot, pid = served_by(server, source)
            assert slot == before[source][0]
            assert pid == (new if slot == victim else pids[slot])
        assert not process_alive(old)


SLOW_STARTED: Path | None = None


async def slow_app(scope: Any, receive: Any, send: Any) -> None:
    import asyncio

    if scope["type"] != "http":
        return
    assert SLOW_STARTED is not None
    SLOW_STARTED.touch()
    await asyncio.sleep(0.5)  # the request's own work, under way when SIGTERM arrives
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
    await send({"type": "http.response.body", "body": b"done"})


def test_sigterm_lets_an_in_flight_asgi_request_finish(tmp_path: Path, mode: str) -> None:
    global SLOW_STARTED
    SLOW_STARTED = tmp_path / "started"
    server = StickyServer(slow_app, workers=2, mode=mode)  # type: ignore[arg-type]
    server.start()
    pids = server.all_pids()
    replies: list[Any] = []
    thread = threading.Thread(target=lambda: replies.append(request(server.host, server.port, timeout=10)))
    thread.start()
    wait_until(SLOW_STARTED.exists, 10, "the request did not reach the app")
    server.stop()
    thread.join(10)
    assert replies
    assert replies[0].body == b"done"
    no_process_left(pids)


def test_no_asgi_worker_outlives_a_sigkilled_master(mode: str) -> None:
    server = StickyServer(awhoami, workers=3, mode=mode)  # type: ignore[arg-type]
    server.start()
    try:
        pids = server.all_pids()
        assert server.master_pid is not None
        os.kill(server.master_pid, signal.SIGKILL)
        no_process_left(pids)
    finally:
        server.stop()


async def short_app(scope: Any, receive: Any, send: Any) -> None:
    import asyncio

    if scope["type"] != "http":
        return
    await asyncio.sleep(0.02)  # a short request's own work, so that some are in flight at any moment
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(
    ("routing", "mode"),
    [
        pytest.param("ip-hash", "kernel", marks=pytest.mark.skipif(not kernel_supported(), reason="Linux")),
        ("ip-hash", "handoff"),
        ("header", "handoff"),
    ],
)
def test_sigterm_under_load_finishes_every_asgi_request_the_server_accepted(routing: str, mode: str) -> None:
    """The WSGI test of the same name (test_sticky_hostile.py), on uvicorn workers."""
    server = StickyServer(short_app, workers=2, routing=routing, mode=mode, trusted_proxies=["127.0.0.1"])  # type: ignore[arg-type]
    server.start()
    pids = server.all_pids()
    outcomes = stop_under_load(server)
    failures = {k: v for k, v in outcomes.items() if k not in ("ok", "refused")}
    print(f"\nSIGTERM under load, ASGI ({routing}, {mode}): {dict(outcomes)}")
    assert not failures, f"requests lost in the stop: {failures} (of {sum(outcomes.values())})"
    no_process_left(pids)


# -- limits ---------------------------------------------------------------------------------------


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes `sock` (which sent nothing) within `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_the_per_address_limit_holds_in_asgi_workers(mode: str) -> None:
    with serving(awhoami, workers=2, mode=mode, per_address_limit=2) as server:
        held = [socket.create_connection((server.host, server.port), source_address=("127.0.0.7", 0))]
        held.append(socket.create_connection((server.host, server.port), source_address=("127.0.0.7", 0)))
        try:
            wait_until(lambda: served_by(server, "127.0.0.8")[0] >= 0, 5)
            extra = socket.create_connection((server.host, server.port), source_address=("127.0.0.7", 0))
            with extra:
                assert closed_by_server(extra, 5), "a third connection from 127.0.0.7 was kept"
            assert not closed_by_server(held[0], 0.2)  # the two it holds are served
            held[0].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert held[0].recv(100).startswith(b"HTTP/1.1 200")
        finally:
            for sock in held:
                sock.close()


def test_a_connection_that_sends_no_head_is_closed_after_the_header_timeout(mode: str) -> None:
    with (
        serving(awhoami, workers=2, mode=mode, header_timeout=0.5) as server,
        socket.create_connection((server.host, server.port), source_address=("127.0.0.9", 0)) as silent,
    ):
        started = time.monotonic()
        assert closed_by_server(silent, 5)
        assert 0.4 < time.monotonic() - started < 3


def whole_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length, head and body, read from a kept-alive `sock`."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096) or pytest.fail(f"the server closed after {data!r}")
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(4096) or pytest.fail("the server closed mid-body")
    return head + b"\r\n\r\n" + body


def test_a_later_head_trickled_on_a_kept_alive_connection_is_cut_at_the_header_timeout(mode: str) -> None:
    """The first request is answered; the second head comes a byte every 0.2 s and never ends. The
    connection is closed once the header timeout has passed since that head's first byte, while a
    kept-alive connection that sends whole requests is served throughout."""
    with (
        serving(awhoami, workers=2, mode=mode, header_timeout=0.5, idle_timeout=30) as server,
        socket.create_connection((server.host, server.port), source_address=("127.0.0.10", 0)) as slow,
        socket.create_connection((server.host, server.port), source_address=("127.0.0.11", 0)) as steady,
    ):
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        slow.sendall(request)
        assert whole_response(slow).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        sent = 0
        closed = False
        while not closed and time.monotonic() - started < 10:
            try:
                slow.sendall(b"GET / HTTP/1.1\r\nX-Slow: "[sent % 24 : sent % 24 + 1] or b"a")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sent += 1
            closed = closed_by_server(slow, 0.2)
            steady.sendall(request)
            assert whole_response(steady).startswith(b"HTTP/1.1 200")
        assert closed, f"a head trickled for {time.monotonic() - started:.1f}s was never cut"
        assert 0.4 < time.monotonic() - started < 5


# -- websockets -----------------------------------------------------------------------------------


def websocket_from(server: StickyServer, source: str) -> Any:
    """A websocket to `awhoami` from `source` (websocket-client on a socket bound there)."""
    websocket = pytest.importorskip("websocket", reason="the websocket tests use websocket-client")
    sock = socket.create_connection((server.host, server.port), timeout=5, source_address=(source, 0))
    return websocket.create_connection(f"ws://{server.host}:{server.port}/", socket=sock, timeout=5)


def test_websockets_echo_and_stay_on_the_worker_of_their_address(mode: str) -> None:
    with serving(awhoami, workers=4, mode=mode) as server:
        for source in loopback_sources(8):
            slot, pid = served_by(server, source)
            ws = websocket_from(server, source)
            try:
                assert ws.recv() == f"slot {slot} pid {pid}", source
                for text in ("one", "two", "three" * 1000):
                    ws.send(text)
                    assert ws.recv() == text
            finally:
                ws.close()
            assert served_by(server, source) == (slot, pid)


def test_websockets_count_toward_the_per_address_limit_while_open(mode: str) -> None:
    """uvicorn swaps its HTTP protocol out on upgrade; the worker still counts, and forgets, each one."""
    with serving(awhoami, workers=2, mode=mode, per_address_limit=3) as server:
        held = [websocket_from(server, "127.0.0.11") for _ in range(3)]
        assert all(ws.recv().startswith("slot ") for ws in held)
        refused = (OSError, pytest.importorskip("websocket").WebSocketException)
        with pytest.raises(refused):  # the fourth is closed before its handshake is answered
            websocket_from(server, "127.0.0.11").recv()
        for ws in held:
            ws.close()

        def admitted() -> bool:
            try:
                ws = websocket_from(server, "127.0.0.11")
            except refused:
                return False
            ws.close()
            return True

        wait_until(admitted, 5, "127.0.0.11 was still refused after its websockets closed")
