"""A real FastAPI app under a real uvicorn server (a subprocess on an ephemeral loopback
port) keeps a session counter, and its websocket reads the session of the HTTP cookie."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

APP = """
from fastapi import FastAPI, Request, WebSocket

from storekit.asgi import SessionMiddleware
from storekit.reference import AsyncMemoryStore

app = FastAPI()


@app.get("/count")
async def count(request: Request) -> dict[str, int]:
    request.session["n"] = request.session.get("n", 0) + 1
    return {"n": request.session["n"]}


@app.websocket("/ws")
async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(dict(websocket.session))
    await websocket.close()


app.add_middleware(SessionMiddleware, store=AsyncMemoryStore(), secret="uvicorn test", max_age=3600)
"""

READY = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class Uvicorn:
    """uvicorn serving ``module:app`` on 127.0.0.1, port 0 (the kernel picks one)."""

    def __init__(self, directory: Path, target: str) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                target,
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--ws",
                "wsproto",
            ],
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def port(self, timeout: float = 20.0) -> int:
        """The port, once uvicorn says it listens and answers; a failure quotes its output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            found = next((m for line in list(self.lines) if (m := READY.search(line))), None)
            if found is not None:
                port = int(found.group(1))
                try:
                    httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1.0)
                    return port
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"uvicorn did not start within {timeout}s: {''.join(self.lines)[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=5)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("uvicorn")
    (directory / "counter_app.py").write_text(APP, encoding="utf-8")
    server = Uvicorn(directory, "counter_app:app")
    try:
        yield f"http://127.0.0.1:{server.port()}"
    finally:
        server.stop()


def test_a_fastapi_app_under_uvicorn_counts_across_requests(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        assert [client.get("/count").json()["n"] for _ in range(4)] == [1, 2, 3, 4]
        with httpx.Client(base_url=base_url, timeout=5.0) as other:
            assert other.get("/count").json()["n"] == 1  # another client, another session
        assert client.get("/count").json()["n"] == 5


def test_a_websocket_under_uvicorn_reads_the_session_of_its_cookie(base_url: str) -> None:
    websocket = pytest.importorskip("websocket")  # websocket-client
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        client.get("/count")
        client.get("/count")
        value = client.cookies["connect.sid"]
    connection = websocket.create_connection(
        base_url.replace("http", "ws") + "/ws", cookie=f"connect.sid={value}", timeout=5
    )
    try:
        assert connection.recv() == '{"n":2}'
    finally:
        connection.close()
