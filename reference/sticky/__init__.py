"""The sticky server: each client address on one worker process.

The parts: ``routing`` (hashing and header routing, pure), ``limits`` (what
one client may hold: connection limits, timeouts, trusted proxies, pure),
``bpf`` (the kernel's steering program and the filter that refuses new
connections on stop), ``sockets`` (listeners), ``handoff`` (the master's
accept loop when the kernel does not steer), ``worker`` (a WSGI server in
each worker), ``guard`` (waitress held to the limits), ``asgi_worker``
(uvicorn in each worker, for an ASGI app), ``master`` (forking,
replacing and draining workers), ``server`` (``StickyServer``), ``cli``
(``storekit serve``). See docs/sticky.md.
"""

from storekit.reference.sticky.cli import main
from storekit.reference.sticky.server import (
    SLOT_ENV,
    StickyServer,
    StickyServerError,
    awhoami,
    require_waitress,
    resolve_mode,
    whoami,
)

__all__ = [
    "SLOT_ENV",
    "StickyServer",
    "StickyServerError",
    "awhoami",
    "main",
    "require_waitress",
    "resolve_mode",
    "whoami",
]
