"""The sticky server's configuration and listening sockets.

In kernel mode there is one listening socket per worker slot, all on one port
with SO_REUSEPORT; they call listen() in slot order, which makes a slot's
index in the kernel's reuseport group equal to the slot number, and the
classic BPF program of _sticky_bpf returns that index. In handoff mode there
is one listening socket, which only the master accepts on. Either way a port
that something already listens on is refused first (see portcheck).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from storekit.reference.sticky.app import Interface
from storekit.reference.sticky.bpf import attach_reuseport_program, ip_hash_program
from storekit.reference.sticky.limits import Limits
from storekit.reference.sticky.portcheck import check_port_free
from storekit.reference.sticky.routing import Mode, Routing

__all__ = ["Config", "KernelSteeringError", "Resolved", "open_listeners", "open_sockets"]

Resolved = Literal["kernel", "handoff"]


@dataclass
class Config:
    """Everything the master needs, already checked."""

    app: Callable[..., Any]
    factory: bool
    workers: int
    routing: Routing
    mode: Resolved
    seed: int
    header: str | None = "X-Forwarded-For"
    cookie: str | None = None
    threads: int = 4
    graceful_timeout: float = 10.0
    limits: Limits = field(default_factory=Limits)
    server_options: dict[str, Any] = field(default_factory=dict)
    interface: Interface = "wsgi"  # "auto": a factory's app, judged in each worker


def open_sockets(host: str, port: int, config: Config, backlog: int = 1024) -> list[socket.socket]:
    """The listening sockets: one per slot in kernel mode (listen() order = slot), else one."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    count = config.workers if config.mode == "kernel" else 1
    check_port_free(family, address)  # SO_REUSEPORT would let us join a port another server serves
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            # IPPROTO_TCP, not 0: the connections accepted from it carry it, and asyncio
            # sets TCP_NODELAY only on sockets whose proto says TCP (its _set_nodelay).
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # Linux passes it to them too
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if config.mode == "kernel":
                _steer(sock.setsockopt, socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(address)
            address = sock.getsockname()  # port 0: the others join the port the first one got
        for sock in sockets:
            sock.listen(backlog)
            sock.setblocking(False)
        if config.mode == "kernel" and config.routing == "ip-hash":
            program = ip_hash_program(config.workers, config.seed)
            _steer(attach_reuseport_program, sockets[0], program)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class KernelSteeringError(OSError):
    """This system refused SO_REUSEPORT or the classic BPF program (mode 'handoff' works anywhere)."""


def _steer(call: Callable[..., None], *args: Any) -> None:
    try:
        call(*args)
    except OSError as exc:
        raise KernelSteeringError(
            exc.errno, f"kernel steering is not available here ({exc}); use mode 'handoff'"
        ) from exc


def open_listeners(host: str, port: int, config: Config, requested: Mode) -> list[socket.socket]:
    """`open_sockets`, but in mode 'auto' fall back to handoff when the kernel refuses to steer."""
    try:
        return open_sockets(host, port, config)
    except KernelSteeringError:
        if requested != "auto":
            raise
        config.mode = "handoff"
        return open_sockets(host, port, config)
