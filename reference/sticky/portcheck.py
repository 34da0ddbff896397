"""Refuse a port that something already listens on, before joining it with SO_REUSEPORT.

In kernel mode every slot's socket sets SO_REUSEPORT, and so did the sockets
of a sticky server already running on the port: a second one would bind
without error and take no traffic until the first stops. So before binding,
a probe binds the address with SO_REUSEADDR but without SO_REUSEPORT, which
Linux refuses exactly when a socket listens there (connections in TIME_WAIT
do not count). On Linux the listener's process is looked up in /proc, as far
as this user may read it, to name it in the message.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from typing import Any

__all__ = ["PortInUseError", "check_port_free", "listener_of"]

_LISTEN = "0A"


class PortInUseError(OSError):
    """Something already listens on the address; ``strerror`` says who, when known, and the fix."""


def check_port_free(family: int, address: tuple[Any, ...]) -> None:
    """Raise PortInUseError if a socket listens on `address` (port 0, any free port, always passes)."""
    host, port = address[0], address[1]
    if port == 0:
        return
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return  # the real bind reports it
            owner = listener_of(port)
            by = f" by pid {owner[0]} ({owner[1]})" if owner else " by another process"
            raise PortInUseError(
                errno.EADDRINUSE,
                f"port {port} on {host} is already served{by}; stop that server first, or choose "
                "another port with --bind",
            ) from None


def listener_of(port: int) -> tuple[int, str] | None:
    """(pid, command line) of a process of ours that listens on TCP `port`, if /proc tells."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and int(fields[1].rpartition(":")[2], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(entry.name), _cmdline(entry)
        except OSError:  # another user's process, or one that just exited
            continue
    return None


def _cmdline(entry: Path) -> str:
    try:
        words = (entry / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return "?"
    return " ".join(w.decode("utf-8", "replace") for w in words)[:200]
