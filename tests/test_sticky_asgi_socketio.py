"""python-socketio's ASGI app under the sticky server, as its users deploy it: AsyncServer + ASGIApp.

The websocket transport needs one connection; polling (and polling upgraded to a
websocket) needs every request of a session to reach the worker that holds it.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

socketio = pytest.importorskip(
    "socketio", reason="python-socketio is not installed (pip install storekit[test])"
)
pytest.importorskip("uvicorn", reason="ASGI workers run uvicorn")
pytest.importorskip("requests", reason="python-socketio's polling client needs requests")
pytest.importorskip("websocket", reason="python-socketio's websocket client needs websocket-client")

from storekit.reference.sticky import StickyServer  # noqa: E402
from storekit.reference.sticky.bpf import kernel_supported  # noqa: E402
from storekit.testing.http_client import loopback_sources  # noqa: E402

MODES = [
    pytest.param("kernel", marks=pytest.mark.skipif(not kernel_supported(), reason="needs Linux")),
    "handoff",
]


def make_app() -> Callable[..., Any]:
    """Called once in each worker: every worker has its own Socket.IO sessions."""
    sio = socketio.AsyncServer(async_mode="asgi", ping_interval=1, ping_timeout=2)

    @sio.event
    async def echo(sid: str, data: Any) -> dict[str, Any]:
        return {"echo": data, "pid": os.getpid()}

    @sio.event
    async def join(sid: str, room: str) -> None:
        await sio.enter_room(sid, room)
        await sio.emit("joined", {"room": room, "pid": os.getpid()}, room=room)

    return socketio.ASGIApp(sio)  # type: ignore[no-any-return]


def client_from(
    url: str, source: str | None, *, one_request_per_connection: bool = False
) -> tuple[Any, socket.socket | None]:
    """A socketio.Client whose connections (polling and websocket) all come from `source`, and the
    socket its websocket will use (closed by the caller). With `one_request_per_connection`, every
    polling request opens a connection of its own (requests otherwise reuses a kept-alive one
    when it can, which may carry a whole session to one worker by luck)."""
    import requests

    if source is None:
        http = requests.Session()
        if one_request_per_connection:
            http.headers["Connection"] = "close"
        return socketio.Client(handle_sigint=False, request_timeout=3, http_session=http), None
    from requests.adapters import HTTPAdapter

    class FromSource(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **{**kwargs, "source_address": (source, 0)})

    http = requests.Session()
    http.mount("http://", FromSource())
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5, source_address=(source, 0))
    # websocket-client takes a connected socket; engine.io opens at most one websocket per client
    options = {"socket": sock}
    client = socketio.Client(
        handle_sigint=False, request_timeout=3, http_session=http, websocket_extra_options=options
    )
    return client, sock


def session(
    url: str, transports: list[str], source: str | None = None, *, one_request_per_connection: bool = False
) -> tuple[bool, str]:
    """Connect, make a call, join a room and hear of it; (worked, what happened)."""
    client, sock = client_from(url, source, one_request_per_connection=one_request_per_connection)
    heard: list[dict[str, Any]] = []
    client.on("joined", heard.append)
    try:
        client.connect(url, transports=transports, wait_timeout=3)
        answer = client.call("echo", "hi", timeout=3)
        room = f"room-{source}"
        client.emit("join", room)
        client.sleep(0)
        for _ in range(300):
            if heard:
                break
            client.sleep(0.01)
        worked = answer["echo"] == "hi" and heard == [{"room": room, "pid": answer["pid"]}]
        return worked, f"{answer['pid']} answered over {client.transport()}, heard {heard}"
    except (socketio.exceptions.SocketIOError, OSError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        client.disconnect()
        if sock is not None:
            sock.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transports", [["websocket"], ["polling"], ["polling", "websocket"]])
def test_socketio_asgi_works_under_ip_hash(mode: str, transports: list[str]) -> None:
    with StickyServer(make_app, factory=True, workers=4, routing="ip-hash", mode=mode) as server:  # type: ignore[arg-type]
        for attempt in range(3):
            worked, what = session(server.url, transports)
            assert worked, f"attempt {attempt} over {transports}: {what}"
            assert f"over {transports[-1]}," in what  # polling was upgraded when asked


def test_socketio_asgi_websocket_transport_works_under_round_robin() -> None:
    """One connection per session: no stickiness needed."""
    with StickyServer(make_app, factory=True, workers=4, routing="round-robin", mode="handoff") as server:
        worked, what = session(server.url, ["websocket"])
        assert worked, what


def test_socketio_asgi_polling_fails_under_round_robin() -> None:
    """Strict rotation (handoff mode) sends the handshake's second request to another worker."""
    with StickyServer(make_app, factory=True, workers=4, routing="round-robin", mode="handoff") as server:
        for attempt in range(3):
            worked, what = session(server.url, ["polling"], one_request_per_connection=True)
            assert not worked, f"attempt {attempt} worked without stickiness: {what}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"]])
def test_64_concurrent_clients_each_reach_the_worker_of_their_address(
    mode: str, transports: list[str]
) -> None:
    with StickyServer(make_app, factory=True, workers=4, routing="ip-hash", mode=mode) as server:  # type: ignore[arg-type]
        results: dict[str, tuple[bool, str]] = {}

        def one(source: str) -> None:
            results[source] = session(server.url, transports, source)

        threads = [threading.Thread(target=one, args=(s,)) for s in loopback_sources(64, start=20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        pids = server.pids
        for source, (worked, what) in sorted(results.items()):
            assert worked, f"{source} over {transports}: {what}"
            assert f"over {transports[-1]}," in what
            assert what.split()[0] == str(pids[server.slot_for(source)]), f"{source}: {what}"
        assert len(results) == 64


def make_app_with_sessions() -> Callable[..., Any]:
    """socket.io beside a Starlette /login, under storekit.asgi.SessionMiddleware (one store per worker)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from storekit.asgi import SessionMiddleware
    from storekit.reference import AsyncMemoryStore

    sio = socketio.AsyncServer(async_mode="asgi", ping_interval=1, ping_timeout=2)
    users: dict[str, Any] = {}

    @sio.event
    async def connect(sid: str, environ: dict[str, Any]) -> None:
        users[sid] = environ["asgi.scope"]["session"].get("user")  # the session of the HTTP cookie

    @sio.event
    async def who(sid: str, data: Any) -> Any:
        return users[sid]

    async def login(request: Request) -> PlainTextResponse:
        request.session["user"] = request.query_params["name"]
        return PlainTextResponse("ok")

    web = Starlette(routes=[Route("/login", login)])
    app = socketio.ASGIApp(sio, other_asgi_app=web)
    return SessionMiddleware(app, AsyncMemoryStore(), secret="a long random value for the socket.io test")


@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"]])
def test_a_socketio_handler_reads_the_storekit_session_of_the_http_cookie(transports: list[str]) -> None:
    from http.cookies import SimpleCookie

    from storekit.testing.http_client import request

    with StickyServer(make_app_with_sessions, factory=True, workers=4) as server:
        for n, source in enumerate(loopback_sources(6, start=100)):
            reply = request(server.host, server.port, f"/login?name=user{n}", source=source)
            assert reply.status == 200, reply
            cookie = next(v for k, v in reply.headers.items() if k.lower() == "set-cookie")
            morsel = next(iter(SimpleCookie(cookie).values()))
            client, sock = client_from(server.url, source)
            try:
                client.connect(
                    server.url, transports=transports, headers={"Cookie": f"{morsel.key}={morsel.value}"}
                )
                assert client.call("who", "?", timeout=3) == f"user{n}", source
                assert client.transport() == transports[-1]
            finally:
                client.disconnect()
                if sock is not None:
                    sock.close()
