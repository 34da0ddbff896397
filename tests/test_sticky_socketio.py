"""A real client that needs stickiness: python-socketio's handshake over the polling transport.

Socket.IO's polling transport makes several HTTP requests on more than one
connection (a long poll and the posts beside it) that must all reach the
process holding the session: the seed's reason for sticky-session.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

socketio = pytest.importorskip(
    "socketio", reason="python-socketio is not installed (pip install storekit[test])"
)
pytest.importorskip("requests", reason="python-socketio's polling client needs requests")

from storekit.reference.sticky import StickyServer  # noqa: E402
from storekit.reference.sticky.bpf import kernel_supported  # noqa: E402


def make_app() -> Callable[..., Any]:
    """Called once in each worker: every worker has its own Socket.IO sessions."""
    sio = socketio.Server(async_mode="threading", ping_interval=2, ping_timeout=2)

    @sio.event
    def echo(sid: str, data: Any) -> dict[str, Any]:
        return {"echo": data, "pid": os.getpid()}

    return socketio.WSGIApp(sio)  # type: ignore[no-any-return]


def handshake(url: str, *, one_request_per_connection: bool = False) -> tuple[bool, str]:
    """Connect over polling only and make one call; (worked, what happened). With
    `one_request_per_connection`, every polling request opens a connection of its own, as
    requests from several browsers' tabs or through a proxy do; otherwise requests reuses a
    kept-alive one when it can, which may carry a whole session to one worker by luck."""
    http = None
    if one_request_per_connection:
        import requests

        http = requests.Session()
        http.headers["Connection"] = "close"
    client = socketio.Client(handle_sigint=False, request_timeout=3, http_session=http)
    try:
        client.connect(url, transports=["polling"], wait_timeout=3)
        answer = client.call("echo", "hi", timeout=3)
        return answer["echo"] == "hi", f"answered by pid {answer['pid']}"
    except (socketio.exceptions.SocketIOError, OSError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        client.disconnect()


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("kernel", marks=pytest.mark.skipif(not kernel_supported(), reason="needs Linux")),
        "handoff",
    ],
)
def test_socketio_handshake_works_under_ip_hash(mode: str) -> None:
    with StickyServer(make_app, factory=True, workers=4, routing="ip-hash", mode=mode) as server:  # type: ignore[arg-type]
        for attempt in range(3):
            worked, what = handshake(server.url)
            assert worked, f"attempt {attempt}: {what}"


def test_socketio_handshake_fails_under_round_robin() -> None:
    """Strict rotation (handoff mode) sends the handshake's second connection to another worker."""
    with StickyServer(make_app, factory=True, workers=4, routing="round-robin", mode="handoff") as server:
        for attempt in range(3):
            worked, what = handshake(server.url, one_request_per_connection=True)
            assert not worked, f"attempt {attempt} worked without stickiness: {what}"


def test_python_examples_in_docs_sticky_md_run() -> None:
    """Every ```python block of docs/sticky.md runs as written (each asserts what it shows)."""
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs" / "sticky.md"
    if not docs.exists():
        pytest.skip(f"{docs} is not in this tree (installed package without docs)")
    blocks = docs.read_text().split("```python\n")[1:]
    assert blocks, "docs/sticky.md has no python example"
    for number, block in enumerate(blocks, 1):
        code = block.split("```", 1)[0]
        namespace: dict[str, Any] = {"__name__": f"docs_sticky_example_{number}"}
        exec(compile(code, f"docs/sticky.md example {number}", "exec"), namespace)
