"""What the cluster master's tests share: reading one whole frame off a raw socket, and a server."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator

from storekit.reference.cluster import wire
from storekit.reference.cluster.server import ClusterServer
from storekit.reference.cluster.state import ClusterState


def read_frame(sock: socket.socket) -> bytes:
    """One whole frame, prefix included (read a byte at a time until its size is known)."""
    data = b""
    while True:
        size = wire.frame_size(data, len(data))
        if size and len(data) >= size:
            return data
        chunk = sock.recv(size - len(data) if size else 1)
        if not chunk:
            raise EOFError
        data += chunk


@contextlib.contextmanager
def cluster_server(max_session_bytes: int = 1 << 20) -> Iterator[ClusterServer]:
    """A real ClusterServer in this process, on a fresh private directory."""
    directory = tempfile.mkdtemp(prefix="storekit-test-", dir="/tmp")
    server = ClusterServer(
        os.path.join(directory, "sock"),
        os.urandom(32),
        state=ClusterState(max_session_bytes=max_session_bytes),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory)


@contextlib.contextmanager
def unix_peer(path: str, behave: Callable[[socket.socket], None]) -> Iterator[str]:
    """A Unix socket server at ``path`` that hands each connection to ``behave``, on a thread
    of its own; every socket is closed on exit."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            threading.Thread(target=behave, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield path
    finally:
        for sock in [listener, *held]:
            sock.close()
