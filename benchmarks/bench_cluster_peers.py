"""The backends bench_cluster.py compares: each a context manager that starts
its server and yields a client factory (called in each worker after fork) and
a function giving the server's CPU seconds so far."""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from storekit.codec import decode_session, encode_session, format_expires
from storekit.reference import cluster

__all__ = [
    "BACKENDS",
    "CODECS",
    "ORDER",
    "SESSION",
    "SIDS_PER_WORKER",
    "Backend",
    "Client",
    "ctx",
    "use_codec",
]

SESSION: dict[str, Any] = {
    "cookie": {"originalMaxAge": 86_400_000, "expires": format_expires(time.time() + 86_400), "path": "/"},
    "user": {"id": 12345, "name": "Ada Lovelace", "roles": ["admin", "editor"]},
    "cart": [{"sku": f"SKU-{i:04d}", "qty": i % 3 + 1} for i in range(16)],
    "flash": "x" * 300,
}
SIDS_PER_WORKER = 64
CODECS: dict[str, tuple[Callable[[Any], str | bytes], Callable[[str | bytes], Any]]] = {
    # the cheapest JSON the standard library offers: a prebuilt compact encoder, no checks
    "json": (
        json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode,
        json.loads,
    ),
    # exactly ClusterStore's JSON work: the contract's checks, orjson where installed
    "storekit": (encode_session, decode_session),
}
dumps, loads = CODECS["json"]  # the peers' codec; use_codec() changes it before workers fork


def use_codec(name: str) -> None:
    """Make the peers encode and decode with ``CODECS[name]``."""
    global dumps, loads
    dumps, loads = CODECS[name]


Client = tuple[Callable[[str], Any], Callable[[str, Any], None]]
Backend = tuple[Callable[[], Client], Callable[[], float]]  # client factory, server CPU seconds so far
ctx = multiprocessing.get_context("fork")


@contextmanager
def cluster_backend() -> Iterator[Backend]:
    with cluster.serving():

        def client() -> Client:
            store = cluster.ClusterStore()
            return store.get, store.set

        yield client, _own_cpu


@contextmanager
def manager_backend() -> Iterator[Backend]:
    with ctx.Manager() as manager:
        shared = manager.dict()

        def client() -> Client:
            def get(sid: str) -> Any:
                text = shared.get(sid)
                return None if text is None else loads(text)

            def set_(sid: str, session: Any) -> None:
                shared[sid] = dumps(session)

            return get, set_

        process = getattr(manager, "_process", None)
        yield client, (lambda: _cpu(process.pid)) if process is not None else (lambda: 0.0)


@contextmanager
def redis_backend() -> Iterator[Backend]:
    import redis

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

        def client() -> Client:
            r = redis.Redis(host="127.0.0.1", port=port)

            def get(sid: str) -> Any:
                data = r.get(sid)
                return None if data is None else loads(data)

            def set_(sid: str, session: Any) -> None:
                r.set(sid, dumps(session))

            return get, set_

        yield client, lambda: _cpu(server.pid)
    finally:
        server.terminate()
        server.wait()


_STASH_CONF = """
import pathlib

bind = "127.0.0.1:0"
workers = 1
dirty_workers = 1
dirty_apps = ["gunicorn.dirty.app:DirtyApp"]


def on_dirty_starting(arbiter):
    import os

    pathlib.Path({out!r}).write_text(f"{{os.getpid()}} {{arbiter.socket_path}}")
"""


@contextmanager
def stash_backend() -> Iterator[Backend]:
    """gunicorn's dirty arbiter, started by a real gunicorn with one idle web
    worker and one dirty worker; the table lives in the arbiter, whose
    ``on_dirty_starting`` hook says where its socket is."""
    from gunicorn.dirty.stash import StashClient

    directory = tempfile.mkdtemp(prefix="bench-stash-")
    out = os.path.join(directory, "arbiter")
    conf = os.path.join(directory, "gunicorn.conf.py")
    Path(conf).write_text(_STASH_CONF.format(out=out))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            conf,
            "--chdir",
            os.path.dirname(os.path.abspath(__file__)),
            "bench_sticky:hello",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not (os.path.exists(out) and os.path.getsize(out)):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn's dirty arbiter did not start")
            time.sleep(0.05)
        pid_text, path = Path(out).read_text().split(" ", 1)
        while True:
            try:
                StashClient(path, timeout=5).ensure("sessions")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

        def client() -> Client:
            table = StashClient(path, timeout=5).table("sessions")

            def get(sid: str) -> Any:
                text = table.get(sid)
                return None if text is None else loads(text)

            def set_(sid: str, session: Any) -> None:
                table[sid] = dumps(session)

            return get, set_

        yield client, lambda: _cpu(int(pid_text))
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def raw_backend() -> Iterator[Backend]:
    """A 4-byte length + body echo of the sizes ClusterStore moves: a get sends
    ~40 bytes and receives the session; a set sends the session, receives 5 bytes."""
    directory = tempfile.mkdtemp(prefix="bench-raw-")
    path = os.path.join(directory, "sock")
    body = json.dumps(SESSION).encode()
    reply_get = len(body).to_bytes(4, "big") + body
    reply_set = b"\x00\x00\x00\x01\x00"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)

    def serve(conn: socket.socket) -> None:
        buf = bytearray(1 << 16)
        view = memoryview(buf)
        while True:
            filled = conn.recv_into(view)
            if not filled:
                return
            while filled < 4 or filled < 4 + int.from_bytes(buf[:4], "big"):
                filled += conn.recv_into(view[filled:])
            conn.sendall(reply_get if buf[4] == 1 else reply_set)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()

    def client() -> Client:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        buf = bytearray(1 << 16)
        view = memoryview(buf)

        def roundtrip(request: bytes) -> None:
            sock.sendall(request)
            filled = sock.recv_into(view)
            while filled < 4 or filled < 4 + int.from_bytes(buf[:4], "big"):
                filled += sock.recv_into(view[filled:])

        def get(sid: str) -> Any:
            roundtrip(b"\x00\x00\x00\x24\x01" + b"k" * 35)

        def set_(sid: str, session: Any) -> None:
            roundtrip(len(body).to_bytes(4, "big") + b"\x02" + body[1:])

        return get, set_

    try:
        yield client, _own_cpu
    finally:
        listener.close()
        shutil.rmtree(directory, ignore_errors=True)


ORDER = ["cluster", "manager", "redis", "stash", "raw"]
BACKENDS = {
    "cluster": cluster_backend,
    "manager": manager_backend,
    "redis": redis_backend,
    "stash": stash_backend,
    "raw": raw_backend,
}


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
