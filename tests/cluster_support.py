"""What the cluster master's tests share: reading one whole frame off a raw socket."""

from __future__ import annotations

import socket

from storekit.reference.cluster import wire


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
